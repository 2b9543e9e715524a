//! The client side of transfers. [`ClientRead`] sends the RRQ, accepts the server's OACK
//! (or its plain DATA when it ignores options), collects blocks and acknowledges each
//! window. [`ClientWrite`] sends the WRQ, waits for ACK 0 or an OACK, then sends the
//! source exactly as a server read does (windows, ACKs, retransmission on timeout only).
//!
//! ```text
//!  [RRQ sent] --OACK--> check, ACK 0 --.
//!      |  \                            v
//!      |   '--DATA 1 (no options)--> [receiving] --DATA n+1: keep; window full: ACK n
//!   timeout: resend RRQ               |   |  duplicate / gap: ACK n again (RFC 7440)
//!                                     |   '--short block: ACK, Completed
//!                                timeout: resend last ACK (retries capped)
//! ```
//!
//! The driver must lock onto the server's TID (source port) from its first answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Expiry, Outcome, ReadTransfer, TransferConfig, backoff, expire, unwrap_block};
use crate::error::{Error, ErrorCode};
use crate::options::Options;
use crate::packet::{DEFAULT_BLKSIZE, Mode, Packet, Request};
use crate::provider::Source;

/// A client read transfer in progress; the file is collected in memory.
#[derive(Debug)]
pub struct ClientRead {
    request: Vec<u8>,
    asked: Options,
    blksize: usize,
    windowsize: u64,
    tsize: Option<u64>,
    started: bool,
    received: u64,
    in_window: u64,
    data: Vec<u8>,
    send_request: bool,
    ack_due: bool,
    error_due: Option<(ErrorCode, String)>,
    base_timeout: Duration,
    max_retries: u32,
    retries: u32,
    deadline: Option<Instant>,
    outcome: Option<Outcome>,
}

impl ClientRead {
    /// Asks for `path` in octet mode with `options` (none for plain RFC 1350).
    pub fn new(now: Instant, path: &str, options: Options, config: &TransferConfig) -> Self {
        let request = Packet::Rrq(Request {
            filename: path.to_owned(),
            mode: Mode::Octet,
            options: options.to_pairs(),
        })
        .to_vec();
        Self {
            request,
            asked: options,
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            tsize: None,
            started: false,
            received: 0,
            in_window: 0,
            data: Vec::new(),
            send_request: true,
            ack_due: false,
            error_due: None,
            base_timeout: options
                .timeout
                .map_or(config.timeout, |s| Duration::from_secs(u64::from(s))),
            max_retries: config.max_retries,
            retries: 0,
            deadline: Some(now + config.timeout),
            outcome: None,
        }
    }

    /// The size the server announced (tsize in its OACK), if any.
    pub fn tsize(&self) -> Option<u64> {
        self.tsize
    }

    /// The bytes received so far.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Takes the received bytes out.
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// True until the server's first answer arrived: the driver must then lock onto its TID.
    pub fn awaiting_first_answer(&self) -> bool {
        !self.started
    }

    fn arm(&mut self, now: Instant) {
        self.deadline = Some(
            now + backoff(
                self.base_timeout,
                self.asked.timeout.is_some(),
                self.retries,
            ),
        );
    }

    fn finish(&mut self, outcome: Outcome) {
        self.outcome.get_or_insert(outcome);
        self.deadline = None;
    }

    fn fail(&mut self, code: ErrorCode, message: &str, e: Error) {
        self.error_due = Some((code, message.into()));
        self.finish(Outcome::Failed(e));
    }

    /// Handles a datagram from the server's TID.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        if self.outcome.is_some() {
            return;
        }
        match Packet::parse(bytes) {
            Ok(Packet::Oack(pairs)) if !self.started => self.on_oack(now, &pairs),
            Ok(Packet::Oack(_)) => {}
            Ok(Packet::Data { block, data }) => self.on_data(now, block, data),
            Ok(Packet::Error { code, message }) => {
                self.finish(Outcome::Failed(Error::Peer { code, message }))
            }
            Ok(other) => {
                let what = format!("unexpected opcode {}", other.opcode());
                self.fail(
                    ErrorCode::IllegalOperation,
                    "Illegal TFTP operation",
                    Error::Malformed {
                        structure: "client read",
                        what,
                    },
                );
            }
            Err(e) => self.fail(ErrorCode::IllegalOperation, "Illegal TFTP operation", e),
        }
    }

    fn on_oack(&mut self, now: Instant, pairs: &[(String, String)]) {
        let got = Options::from_pairs(pairs);
        // RFC 2347: the server may only lower what we asked for, and only what we asked.
        let bad = got
            .blksize
            .is_some_and(|b| self.asked.blksize.is_none_or(|a| b > a))
            || got
                .windowsize
                .is_some_and(|w| self.asked.windowsize.is_none_or(|a| w > a))
            || (got.tsize.is_some() && self.asked.tsize.is_none())
            || (got.timeout.is_some() && got.timeout != self.asked.timeout);
        if bad {
            let e = Error::Malformed {
                structure: "OACK",
                what: format!("options not asked for or raised: {pairs:?}"),
            };
            return self.fail(ErrorCode::OptionRefused, "Options refused", e);
        }
        self.started = true;
        self.blksize = got.blksize.map_or(DEFAULT_BLKSIZE, usize::from);
        self.windowsize = got.windowsize.map_or(1, u64::from);
        self.tsize = got.tsize;
        if let Some(t) = got.tsize {
            self.data.reserve(t.min(1 << 30) as usize);
        }
        self.send_request = false;
        self.ack_due = true;
        self.retries = 0;
        self.arm(now);
    }

    fn on_data(&mut self, now: Instant, block: u16, data: &[u8]) {
        if !self.started {
            // The server ignored our options: plain RFC 1350.
            self.started = true;
            self.send_request = false;
        }
        if data.len() > self.blksize {
            let e = Error::TooLong {
                structure: "DATA payload",
                len: data.len(),
                max: self.blksize,
            };
            return self.fail(ErrorCode::IllegalOperation, "Block too large", e);
        }
        let abs = unwrap_block(self.received, block);
        if abs != self.received + 1 {
            // Duplicate or gap: tell the server where we are.
            self.in_window = 0;
            self.ack_due = true;
            return;
        }
        self.data.extend_from_slice(data);
        self.received = abs;
        self.retries = 0;
        self.in_window += 1;
        if data.len() < self.blksize {
            self.ack_due = true;
            self.finish(Outcome::Completed);
            return;
        }
        if self.in_window >= self.windowsize {
            self.in_window = 0;
            self.ack_due = true;
        }
        self.arm(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.error_due.is_some() || self.ack_due || self.send_request {
            return None;
        }
        self.deadline
    }

    /// Resends the request or the last ACK, or gives up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        match expire(self.deadline, now, &mut self.retries, self.max_retries) {
            Expiry::NotYet => return,
            Expiry::GiveUp(e) => return self.finish(Outcome::Failed(e)),
            Expiry::Retry => {}
        }
        if self.started {
            self.in_window = 0;
            self.ack_due = true;
        } else {
            self.send_request = true;
        }
        self.arm(now);
    }

    /// Writes the next datagram to send into `buf` and returns its length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        if let Some((code, message)) = self.error_due.take() {
            return Packet::Error { code, message }.emit(buf).ok();
        }
        if std::mem::take(&mut self.send_request) {
            let n = self.request.len();
            buf.get_mut(..n)?.copy_from_slice(&self.request);
            return Some(n);
        }
        if std::mem::take(&mut self.ack_due) {
            return Packet::Ack(self.received as u16).emit(buf).ok();
        }
        None
    }

    /// How the transfer ended, once it has (after any final packet was polled).
    pub fn outcome(&self) -> Option<&Outcome> {
        if self.error_due.is_some() || self.ack_due {
            return None;
        }
        self.outcome.as_ref()
    }

    /// Takes the outcome out, once the transfer has ended.
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome()?;
        self.outcome.take()
    }
}

/// RFC 2347: a server may only lower what the client asked for, and only what it asked.
fn acceptable_oack(asked: &Options, got: &Options) -> bool {
    !(got
        .blksize
        .is_some_and(|b| asked.blksize.is_none_or(|a| b > a))
        || got
            .windowsize
            .is_some_and(|w| asked.windowsize.is_none_or(|a| w > a))
        || (got.tsize.is_some() && asked.tsize.is_none())
        || (got.timeout.is_some() && got.timeout != asked.timeout))
}

/// A client write transfer (upload) in progress.
#[derive(Debug)]
pub struct ClientWrite {
    request: Vec<u8>,
    asked: Options,
    source: Arc<dyn Source>,
    config: TransferConfig,
    send_request: bool,
    retries: u32,
    deadline: Option<Instant>,
    error_due: Option<(ErrorCode, String)>,
    outcome: Option<Outcome>,
    /// The data phase, once the server accepted the request.
    sending: Option<ReadTransfer>,
}

impl ClientWrite {
    /// Uploads `source` as `path` in octet mode, asking for `options`; a tsize option is
    /// filled in with the source's size.
    pub fn new(
        now: Instant,
        path: &str,
        source: Arc<dyn Source>,
        mut options: Options,
        config: &TransferConfig,
    ) -> Self {
        if options.tsize.is_some() {
            options.tsize = Some(source.len());
        }
        let request = Packet::Wrq(Request {
            filename: path.to_owned(),
            mode: Mode::Octet,
            options: options.to_pairs(),
        })
        .to_vec();
        Self {
            request,
            asked: options,
            source,
            config: config.clone(),
            send_request: true,
            retries: 0,
            deadline: Some(now + config.timeout),
            error_due: None,
            outcome: None,
            sending: None,
        }
    }

    /// True until the server's first answer arrived: the driver must then lock onto its TID.
    pub fn awaiting_first_answer(&self) -> bool {
        self.sending.is_none() && self.outcome.is_none()
    }

    fn start(&mut self, now: Instant, agreed: &Options) {
        let t = ReadTransfer::sending(now, self.source.clone(), agreed, &self.config);
        self.sending = Some(t);
        self.deadline = None;
    }

    /// Handles a datagram from the server's TID.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        if self.outcome.is_some() {
            return;
        }
        if let Some(t) = &mut self.sending {
            return t.handle_datagram(now, bytes);
        }
        match Packet::parse(bytes) {
            Ok(Packet::Ack(0)) => self.start(now, &Options::default()),
            Ok(Packet::Oack(pairs)) => {
                let got = Options::from_pairs(&pairs);
                if acceptable_oack(&self.asked, &got) {
                    self.start(now, &got);
                } else {
                    self.error_due = Some((ErrorCode::OptionRefused, "Options refused".into()));
                    let what = format!("options not asked for or raised: {pairs:?}");
                    self.outcome = Some(Outcome::Failed(Error::Malformed {
                        structure: "OACK",
                        what,
                    }));
                }
            }
            Ok(Packet::Error { code, message }) => {
                self.outcome = Some(Outcome::Failed(Error::Peer { code, message }));
            }
            Ok(_) => {}
            Err(e) => {
                self.error_due =
                    Some((ErrorCode::IllegalOperation, "Illegal TFTP operation".into()));
                self.outcome = Some(Outcome::Failed(e));
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.sending {
            Some(t) => t.poll_timeout(),
            None if self.outcome.is_some() || self.send_request => None,
            None => self.deadline,
        }
    }

    /// Resends the request, or lets the data phase retransmit; gives up after the retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(t) = &mut self.sending {
            return t.handle_timeout(now);
        }
        if self.outcome.is_some() {
            return;
        }
        match expire(
            self.deadline,
            now,
            &mut self.retries,
            self.config.max_retries,
        ) {
            Expiry::NotYet => return,
            Expiry::GiveUp(e) => {
                self.outcome = Some(Outcome::Failed(e));
                self.deadline = None;
                return;
            }
            Expiry::Retry => {}
        }
        self.send_request = true;
        self.deadline = Some(now + backoff(self.config.timeout, false, self.retries));
    }

    /// Writes the next datagram to send into `buf` and returns its length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        if let Some(t) = &mut self.sending {
            return t.poll_transmit(buf);
        }
        if let Some((code, message)) = self.error_due.take() {
            return Packet::Error { code, message }.emit(buf).ok();
        }
        if std::mem::take(&mut self.send_request) {
            let n = self.request.len();
            buf.get_mut(..n)?.copy_from_slice(&self.request);
            return Some(n);
        }
        None
    }

    /// How the transfer ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.sending {
            Some(t) => t.outcome(),
            None if self.error_due.is_some() => None,
            None => self.outcome.as_ref(),
        }
    }

    /// Takes the outcome out, once the transfer has ended.
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        match &mut self.sending {
            Some(t) => t.take_outcome(),
            None => {
                self.outcome()?;
                self.outcome.take()
            }
        }
    }
}
