//! The server side of the fixed newstyle handshake (SPECS §1.2-1.3), without I/O.
//!
//! ```text
//!   new() --greeting--> [ClientFlags] --4 bytes--> [Options] --EXPORT_NAME ok / GO ack--> Transmission
//!                              |                      |  ^ every other option: replies, stay
//!                              +-- bad flags --> Close <--+-- ABORT (ack) / EXPORT_NAME refused
//! ```
//! Bytes go in through [`Handshake::handle_input`], replies come out of
//! [`Handshake::take_output`]; [`Handshake::deadline`] says when the driver must give up
//! on a client that stalls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::export::{BlockSizes, Export, ExportProvider, Refusal};
use crate::wire::consts::*;
use crate::wire::option::{
    ClientOption, Info, InfoRequest, MetaContextRequest, OptionHeader, emit_option_reply,
};

/// The context id this server gives `base:allocation` in SET_META_CONTEXT replies.
pub const BASE_ALLOCATION_ID: u32 = 1;

/// Limits of a handshake.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeConfig {
    /// How long a client may take to reach transmission.
    pub timeout: Duration,
    /// Option data longer than this is skipped (never buffered) and refused.
    pub max_option_len: u32,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_option_len: 16 << 10,
        }
    }
}

/// What the handshake agreed on; the input of the transmission phase.
#[derive(Clone)]
pub struct Negotiated {
    /// The export chosen.
    pub export: Arc<dyn Export>,
    /// Its name as the client asked for it.
    pub name: String,
    /// Size in bytes (taken once, at negotiation).
    pub size: u64,
    /// Transmission flags sent to the client.
    pub flags: u16,
    /// Block size constraints of the export.
    pub block_sizes: BlockSizes,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// The context id of `base:allocation` when the client selected it for this export.
    pub base_allocation: Option<u32>,
}

impl std::fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Negotiated")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("structured", &self.structured)
            .field("base_allocation", &self.base_allocation)
            .finish_non_exhaustive()
    }
}

/// The outcome of feeding input.
#[derive(Debug)]
pub enum Progress {
    /// Waiting for more bytes.
    NeedMore,
    /// Enter transmission with these settings (after sending the pending output).
    Transmission(Box<Negotiated>),
    /// Send the pending output, then close the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ClientFlags,
    Options,
    /// Discarding the data of an over-long option, then refusing it.
    Skipping {
        option: u32,
        remaining: u64,
    },
    Done,
}

/// A server-side handshake for one connection.
pub struct Handshake {
    peer: SocketAddr,
    config: HandshakeConfig,
    deadline: Instant,
    state: State,
    out: Vec<u8>,
    no_zeroes: bool,
    structured: bool,
    /// Export name for which `base:allocation` is selected.
    meta_for: Option<String>,
}

impl Handshake {
    /// Starts a handshake with `peer` at `now`; the greeting is already in the output.
    pub fn new(peer: SocketAddr, now: Instant, config: HandshakeConfig) -> Self {
        let mut out = Vec::with_capacity(18);
        out.extend_from_slice(&NBD_INIT_PASSWD.to_be_bytes());
        out.extend_from_slice(&NBD_OPTS_MAGIC.to_be_bytes());
        out.extend_from_slice(&(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES).to_be_bytes());
        Self {
            peer,
            config,
            deadline: now + config.timeout,
            state: State::ClientFlags,
            out,
            no_zeroes: false,
            structured: false,
            meta_for: None,
        }
    }

    /// Bytes to send to the client now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// When the client's time is up; call [`Handshake::handle_timeout`] then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True when the handshake must end at `now` (the driver closes the connection).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// Consumes at most one step (client flags or one option) from `input`; returns the
    /// number of bytes used and what to do next. Call again while it consumes bytes and
    /// says [`Progress::NeedMore`]. An error means a protocol violation: close.
    pub fn handle_input(
        &mut self,
        input: &[u8],
        provider: &dyn ExportProvider,
    ) -> Result<(usize, Progress)> {
        match self.state {
            State::Done => Err(Error::invalid(
                "handshake",
                "state",
                "input after the handshake ended",
            )),
            State::ClientFlags => {
                let Some(raw) = input.get(..4) else {
                    return Ok((0, Progress::NeedMore));
                };
                let flags = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
                if flags & !(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) != 0 {
                    self.state = State::Done;
                    return Err(Error::invalid(
                        "client flags",
                        "flags",
                        format!("unknown bits in {flags:#x}"),
                    ));
                }
                self.no_zeroes = flags & NBD_FLAG_C_NO_ZEROES != 0;
                self.state = State::Options;
                Ok((4, Progress::NeedMore))
            }
            State::Skipping { option, remaining } => {
                let take = remaining.min(input.len() as u64);
                let left = remaining - take;
                if left > 0 {
                    self.state = State::Skipping {
                        option,
                        remaining: left,
                    };
                    return Ok((take as usize, Progress::NeedMore));
                }
                self.state = State::Options;
                if option == NBD_OPT_EXPORT_NAME {
                    self.state = State::Done;
                    return Ok((take as usize, Progress::Close));
                }
                let code = if known_option(option) {
                    NBD_REP_ERR_TOO_BIG
                } else {
                    NBD_REP_ERR_UNSUP
                };
                emit_option_reply(&mut self.out, option, code, b"option data too long");
                Ok((take as usize, Progress::NeedMore))
            }
            State::Options => {
                let Some(head) = input.get(..OPTION_HEADER_LEN) else {
                    return Ok((0, Progress::NeedMore));
                };
                let header = OptionHeader::parse(head).inspect_err(|_| self.state = State::Done)?;
                if header.len > self.config.max_option_len {
                    self.state = State::Skipping {
                        option: header.option,
                        remaining: header.len.into(),
                    };
                    return Ok((OPTION_HEADER_LEN, Progress::NeedMore));
                }
                let total = OPTION_HEADER_LEN + header.len as usize;
                let Some(data) = input.get(OPTION_HEADER_LEN..total) else {
                    return Ok((0, Progress::NeedMore));
                };
                let progress = self.handle_option(header.option, data, provider);
                Ok((total, progress))
            }
        }
    }

    fn handle_option(&mut self, code: u32, data: &[u8], provider: &dyn ExportProvider) -> Progress {
        let option = match ClientOption::parse(code, data) {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(peer = %self.peer, option = code, error = %e, "malformed option");
                if code == NBD_OPT_EXPORT_NAME {
                    self.state = State::Done;
                    return Progress::Close;
                }
                if code == NBD_OPT_SET_META_CONTEXT {
                    self.meta_for = None;
                }
                emit_option_reply(
                    &mut self.out,
                    code,
                    NBD_REP_ERR_INVALID,
                    e.to_string().as_bytes(),
                );
                return Progress::NeedMore;
            }
        };
        tracing::trace!(peer = %self.peer, ?option, "option");
        match option {
            ClientOption::ExportName(name) => {
                self.state = State::Done;
                match provider.open(&name, self.peer) {
                    Ok(export) => {
                        let neg = self.negotiated(name, export);
                        self.out.extend_from_slice(&neg.size.to_be_bytes());
                        self.out.extend_from_slice(&neg.flags.to_be_bytes());
                        if !self.no_zeroes {
                            self.out.extend_from_slice(&[0; 124]);
                        }
                        Progress::Transmission(Box::new(neg))
                    }
                    Err(refusal) => {
                        tracing::info!(peer = %self.peer, export = %name, ?refusal, "EXPORT_NAME refused");
                        Progress::Close
                    }
                }
            }
            ClientOption::Abort => {
                emit_option_reply(&mut self.out, code, NBD_REP_ACK, &[]);
                self.state = State::Done;
                Progress::Close
            }
            ClientOption::List { has_data: true }
            | ClientOption::StructuredReply { has_data: true }
            | ClientOption::StartTls { has_data: true } => {
                self.error(code, NBD_REP_ERR_INVALID, "this option takes no data")
            }
            ClientOption::List { has_data: false } => {
                for listing in provider.list(self.peer) {
                    let mut d = Vec::new();
                    crate::wire::put_str32(&mut d, &listing.name);
                    if let Some(desc) = &listing.description {
                        d.extend_from_slice(desc.as_bytes());
                    }
                    emit_option_reply(&mut self.out, code, NBD_REP_SERVER, &d);
                }
                emit_option_reply(&mut self.out, code, NBD_REP_ACK, &[]);
                Progress::NeedMore
            }
            ClientOption::StartTls { has_data: false } => self.error(
                code,
                NBD_REP_ERR_UNSUP,
                "TLS is not supported by this server",
            ),
            ClientOption::StructuredReply { has_data: false } => {
                if self.structured {
                    return self.error(
                        code,
                        NBD_REP_ERR_INVALID,
                        "structured replies already negotiated",
                    );
                }
                self.structured = true;
                emit_option_reply(&mut self.out, code, NBD_REP_ACK, &[]);
                Progress::NeedMore
            }
            ClientOption::Info(req) => {
                self.info(code, req, provider);
                Progress::NeedMore
            }
            ClientOption::Go(req) => match self.info(code, req, provider) {
                Some(neg) => {
                    self.state = State::Done;
                    Progress::Transmission(Box::new(neg))
                }
                None => Progress::NeedMore,
            },
            ClientOption::ListMetaContext(req) => self.meta_context(code, req, false),
            ClientOption::SetMetaContext(req) => self.meta_context(code, req, true),
            ClientOption::Unknown(_) => self.error(code, NBD_REP_ERR_UNSUP, "option not supported"),
        }
    }

    fn error(&mut self, code: u32, reply: u32, message: &str) -> Progress {
        emit_option_reply(&mut self.out, code, reply, message.as_bytes());
        Progress::NeedMore
    }

    fn negotiated(&self, name: String, export: Arc<dyn Export>) -> Negotiated {
        let base_allocation = (self.structured && self.meta_for.as_deref() == Some(name.as_str()))
            .then_some(BASE_ALLOCATION_ID);
        Negotiated {
            size: export.size(),
            flags: export.capabilities().transmission_flags(self.structured),
            block_sizes: export.block_sizes(),
            structured: self.structured,
            base_allocation,
            name,
            export,
        }
    }

    /// INFO and GO: replies with the export's information, then ACK; `None` on refusal.
    fn info(
        &mut self,
        code: u32,
        req: InfoRequest,
        provider: &dyn ExportProvider,
    ) -> Option<Negotiated> {
        let export = match provider.open(&req.name, self.peer) {
            Ok(e) => e,
            Err(refusal) => {
                let msg = match &refusal {
                    Refusal::Unknown => format!("no export named {:?}", req.name),
                    other => other.message().to_owned(),
                };
                emit_option_reply(&mut self.out, code, refusal.reply_type(), msg.as_bytes());
                return None;
            }
        };
        let neg = self.negotiated(req.name.clone(), export);
        let mut infos = vec![Info::Export {
            size: neg.size,
            flags: neg.flags,
        }];
        let asked = |t: u16| req.requests.contains(&t);
        if asked(NBD_INFO_NAME) {
            infos.push(Info::Name(req.name.clone()));
        }
        if asked(NBD_INFO_DESCRIPTION)
            && let Some(d) = neg.export.description()
        {
            infos.push(Info::Description(d));
        }
        if asked(NBD_INFO_BLOCK_SIZE) || neg.block_sizes != BlockSizes::default() {
            let b = neg.block_sizes;
            infos.push(Info::BlockSize {
                min: b.min,
                preferred: b.preferred,
                max: b.max,
            });
        }
        for info in infos {
            emit_option_reply(&mut self.out, code, NBD_REP_INFO, &info.to_bytes());
        }
        emit_option_reply(&mut self.out, code, NBD_REP_ACK, &[]);
        Some(neg)
    }

    /// LIST_META_CONTEXT and SET_META_CONTEXT; only `base:allocation` exists here.
    fn meta_context(&mut self, code: u32, req: MetaContextRequest, set: bool) -> Progress {
        if set {
            // The selection is replaced even when the option fails.
            self.meta_for = None;
        }
        if !self.structured {
            return self.error(
                code,
                NBD_REP_ERR_INVALID,
                "negotiate structured replies first",
            );
        }
        let matches = if set {
            // SET: exact names only; `base:` and unknown leaves are ignored.
            req.queries.iter().any(|q| q == BASE_ALLOCATION)
        } else {
            req.queries.is_empty()
                || req
                    .queries
                    .iter()
                    .any(|q| q == BASE_ALLOCATION || q == "base:")
        };
        if matches {
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            let mut d = id.to_be_bytes().to_vec();
            d.extend_from_slice(BASE_ALLOCATION.as_bytes());
            emit_option_reply(&mut self.out, code, NBD_REP_META_CONTEXT, &d);
            if set {
                self.meta_for = Some(req.name);
            }
        }
        emit_option_reply(&mut self.out, code, NBD_REP_ACK, &[]);
        Progress::NeedMore
    }
}

fn known_option(code: u32) -> bool {
    matches!(
        code,
        NBD_OPT_EXPORT_NAME
            | NBD_OPT_ABORT
            | NBD_OPT_LIST
            | NBD_OPT_STARTTLS
            | NBD_OPT_INFO
            | NBD_OPT_GO
            | NBD_OPT_STRUCTURED_REPLY
            | NBD_OPT_LIST_META_CONTEXT
            | NBD_OPT_SET_META_CONTEXT
    )
}
