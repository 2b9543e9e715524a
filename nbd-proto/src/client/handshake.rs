//! The client side of the fixed newstyle handshake, without I/O.
//!
//! ```text
//!  [Greeting] -> flags + STRUCTURED_REPLY? -> [AwaitStructured] -> SET_META_CONTEXT? ->
//!  [AwaitMeta] -> GO(name, BLOCK_SIZE) -> [AwaitGo] -> Ready
//! ```

use crate::error::{Error, Result};
use crate::export::BlockSizes;
use crate::wire::consts::*;
use crate::wire::option::{ClientOption, Info, InfoRequest, MetaContextRequest, OptionReplyHeader};

/// What the client asks for.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Export name.
    pub export: String,
    /// Ask for structured replies.
    pub structured: bool,
    /// Ask for `base:allocation` (needs structured replies).
    pub base_allocation: bool,
}

/// What the handshake agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNegotiated {
    /// Export size.
    pub size: u64,
    /// Transmission flags.
    pub flags: u16,
    /// Structured replies are on.
    pub structured: bool,
    /// The server's id of `base:allocation`, when selected.
    pub base_allocation: Option<u32>,
    /// Block size constraints (defaults when the server sent none).
    pub block_sizes: BlockSizes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    AwaitStructured,
    AwaitMeta,
    AwaitGo,
    Done,
}

/// The largest option reply a client accepts.
const MAX_OPTION_REPLY: u32 = 64 << 10;

/// A client-side handshake.
pub struct ClientHandshake {
    config: ClientConfig,
    state: State,
    out: Vec<u8>,
    neg: ClientNegotiated,
}

impl ClientHandshake {
    /// A handshake that will ask for `config`.
    pub fn new(config: ClientConfig) -> Self {
        let neg = ClientNegotiated {
            size: 0,
            flags: 0,
            structured: false,
            base_allocation: None,
            block_sizes: BlockSizes::default(),
        };
        Self {
            config,
            state: State::Greeting,
            out: Vec::new(),
            neg,
        }
    }

    /// Bytes to send to the server now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Consumes at most one server message from `input`; returns the bytes used and,
    /// once the server acknowledged GO, the result.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<(usize, Option<ClientNegotiated>)> {
        if self.state == State::Greeting {
            let Some(g) = input.get(..18) else {
                return Ok((0, None));
            };
            let magic = u64::from_be_bytes(g[..8].try_into().unwrap_or_default());
            let opts = u64::from_be_bytes(g[8..16].try_into().unwrap_or_default());
            if magic != NBD_INIT_PASSWD {
                return Err(Error::BadMagic {
                    structure: "greeting",
                    found: magic,
                });
            }
            if opts != NBD_OPTS_MAGIC {
                return Err(Error::Refused(
                    "server is not fixed newstyle (oldstyle?)".into(),
                ));
            }
            let flags = u16::from_be_bytes([g[16], g[17]]);
            if flags & NBD_FLAG_FIXED_NEWSTYLE == 0 {
                return Err(Error::Refused("server is not fixed newstyle".into()));
            }
            let mut cflags = NBD_FLAG_C_FIXED_NEWSTYLE;
            if flags & NBD_FLAG_NO_ZEROES != 0 {
                cflags |= NBD_FLAG_C_NO_ZEROES;
            }
            self.out.extend_from_slice(&cflags.to_be_bytes());
            if self.config.structured {
                ClientOption::StructuredReply { has_data: false }.emit(&mut self.out);
                self.state = State::AwaitStructured;
            } else {
                self.send_go();
            }
            return Ok((18, None));
        }
        let Some(head) = input.get(..OPTION_REPLY_HEADER_LEN) else {
            return Ok((0, None));
        };
        let h = OptionReplyHeader::parse(head)?;
        if h.len > MAX_OPTION_REPLY {
            return Err(Error::TooLong {
                structure: "option reply",
                len: h.len.into(),
                max: MAX_OPTION_REPLY.into(),
            });
        }
        let total = OPTION_REPLY_HEADER_LEN + h.len as usize;
        let Some(data) = input.get(OPTION_REPLY_HEADER_LEN..total) else {
            return Ok((0, None));
        };
        let done = self.handle_reply(h, data)?;
        Ok((total, done))
    }

    fn send_go(&mut self) {
        let req = InfoRequest {
            name: self.config.export.clone(),
            requests: vec![NBD_INFO_BLOCK_SIZE],
        };
        ClientOption::Go(req).emit(&mut self.out);
        self.state = State::AwaitGo;
    }

    fn handle_reply(
        &mut self,
        h: OptionReplyHeader,
        data: &[u8],
    ) -> Result<Option<ClientNegotiated>> {
        match self.state {
            State::AwaitStructured => {
                self.neg.structured = h.reply_type == NBD_REP_ACK;
                if self.neg.structured && self.config.base_allocation {
                    let req = MetaContextRequest {
                        name: self.config.export.clone(),
                        queries: vec![BASE_ALLOCATION.into()],
                    };
                    ClientOption::SetMetaContext(req).emit(&mut self.out);
                    self.state = State::AwaitMeta;
                } else {
                    self.send_go();
                }
                Ok(None)
            }
            State::AwaitMeta => {
                match h.reply_type {
                    NBD_REP_META_CONTEXT if data.len() >= 4 => {
                        if &data[4..] == BASE_ALLOCATION.as_bytes() {
                            self.neg.base_allocation =
                                Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                        }
                    }
                    _ => self.send_go(), // ACK or an error: go on without it
                }
                Ok(None)
            }
            State::AwaitGo => {
                if h.is_error() {
                    self.state = State::Done;
                    let msg = String::from_utf8_lossy(data);
                    return Err(Error::Refused(format!(
                        "GO refused ({:#x}): {msg}",
                        h.reply_type
                    )));
                }
                match h.reply_type {
                    NBD_REP_INFO => match Info::parse(data)? {
                        Info::Export { size, flags } => {
                            self.neg.size = size;
                            self.neg.flags = flags;
                        }
                        Info::BlockSize {
                            min,
                            preferred,
                            max,
                        } => {
                            self.neg.block_sizes = BlockSizes {
                                min,
                                preferred,
                                max,
                            };
                        }
                        _ => {}
                    },
                    NBD_REP_ACK => {
                        if self.neg.flags & NBD_FLAG_HAS_FLAGS == 0 {
                            return Err(Error::invalid("GO reply", "INFO_EXPORT", "missing"));
                        }
                        self.state = State::Done;
                        return Ok(Some(self.neg.clone()));
                    }
                    _ => {}
                }
                Ok(None)
            }
            State::Greeting | State::Done => {
                Err(Error::invalid("option reply", "state", "unexpected"))
            }
        }
    }
}
