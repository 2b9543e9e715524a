//! The server side of a read transfer (RRQ): sends DATA blocks in windows and waits for
//! ACKs (RFC 1350, RFC 2347 OACK, RFC 7440 windowsize).
//!
//! ```text
//!            new(RRQ)
//!               |
//!     options?--+--no--------------------------.
//!       | yes                                  v
//!  [OACK sent] --ACK 0-->  [sending window acked+1 ..= acked+windowsize] <--.
//!       |  \                   |        |            |                     |
//!  ERROR 8  repeated RRQ x2:   |   ACK n (new): acked = n,            timeout: resend
//!       |   drop options,      |   restart at n+1 (RFC 7440)          from acked+1
//!       v   plain RFC 1350 ----'   duplicate ACK: ignored (RFC 1123)  (retries capped)
//!   Declined                   |
//!                        ACK of last block --> Completed
//! ```
//!
//! Block numbers wrap from 65535 to 0 (as tftpd-hpa and iPXE do); internally blocks are
//! counted in 64 bits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Expiry, Outcome, RttEstimator, TransferConfig, expire, unwrap_block};
use crate::error::{Error, ErrorCode};
use crate::netascii;
use crate::options::Options;
use crate::packet::{DATA_HEADER_LEN, DEFAULT_BLKSIZE, Mode, Packet, Request, emit_data_header};
use crate::provider::{MemorySource, Source};

/// A server read transfer in progress. See the module docs for its state machine.
#[derive(Debug)]
pub struct ReadTransfer {
    source: Arc<dyn Source>,
    blksize: usize,
    windowsize: u64,
    base_timeout: Duration,
    min_timeout: Duration,
    timeout_negotiated: bool,
    /// Round-trip estimate, once an ACK answered a block sent only once.
    rtt: Option<RttEstimator>,
    /// The block being timed and when it was sent (Karn's rule: first sends only).
    probe: Option<(u64, Instant)>,
    /// The time of the latest input, used to stamp what is sent after it.
    now: Instant,
    max_retries: u32,
    max_retries_unconfirmed: u32,
    /// The client has acknowledged something: its address is real.
    confirmed: bool,
    /// Absolute number of the final (short, possibly empty) block.
    last_block: u64,
    /// Highest block acknowledged.
    acked: u64,
    /// Next block to send.
    next: u64,
    /// Highest block ever sent (an ACK beyond it is bogus).
    max_sent: u64,
    /// The OACK while it waits for ACK 0.
    oack: Option<Vec<(String, String)>>,
    /// The OACK must be (re)sent.
    oack_due: bool,
    /// Requests repeated by the client while the OACK waited.
    repeats: u32,
    /// When the transfer began, or the last counted repeat arrived.
    repeated_at: Instant,
    retries: u32,
    deadline: Option<Instant>,
    /// An ERROR packet to send before ending.
    error_due: Option<(ErrorCode, String)>,
    outcome: Option<Outcome>,
    blocks_sent: u64,
    retransmitted: u64,
    /// Bytes of the source read ahead of the blocks being sent, and their offset: one
    /// read serves many small blocks (one system call per block otherwise).
    ahead: Vec<u8>,
    ahead_at: u64,
}

/// Bytes read from the source at a time (at least one block).
const READ_AHEAD: usize = 32 << 10;

impl ReadTransfer {
    /// Starts serving `source` for `request`.
    ///
    /// Octet sources are read in place; netascii sources are converted in memory (up to
    /// `config.max_netascii_size`). Options are accepted within `config.limits` (only
    /// those the client asked for); tsize is offered only in octet mode.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`]: ERROR 8 for an option value outside its RFC's range (see
    /// [`Options::from_request`]), ERROR 4 "Unknown mode" for `mail` and unknown modes, or
    /// a netascii source that is too large; [`Error::Io`] when converting fails.
    pub fn new(
        now: Instant,
        request: &Request,
        source: Arc<dyn Source>,
        config: &TransferConfig,
    ) -> Result<Self, Error> {
        let requested = Options::from_request(&request.options)?;
        let (source, size_known) = match request.mode {
            Mode::Octet => (source, true),
            Mode::Netascii => (
                to_netascii(source.as_ref(), config.max_netascii_size)?,
                false,
            ),
            Mode::Mail | Mode::Unknown(_) => {
                return Err(Error::refused(ErrorCode::IllegalOperation, "Unknown mode"));
            }
        };
        let size = source.len();
        // tsize is omitted for an empty file: curl 7.88 rejects "tsize 0" in an OACK
        // ("invalid tsize value"), and omitting an option is always allowed (RFC 2347).
        let offered_size = Some(size).filter(|&s| size_known && s > 0);
        let accepted = Options::accept(&requested, &config.limits, offered_size);
        let mut t = Self::sending(now, source, &Options::default(), config);
        if !accepted.is_empty() {
            t.apply(&accepted);
            t.oack = Some(accepted.to_pairs());
            t.oack_due = true;
        }
        t.last_block = t.source.len() / t.blksize as u64 + 1;
        Ok(t)
    }

    /// A transfer that sends `source` with `options` already agreed, starting with DATA 1
    /// (the client side of an upload uses this once the server accepted its WRQ).
    pub(crate) fn sending(
        now: Instant,
        source: Arc<dyn Source>,
        options: &Options,
        config: &TransferConfig,
    ) -> Self {
        let mut t = Self {
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            base_timeout: config.timeout,
            min_timeout: config.min_timeout.min(config.timeout),
            timeout_negotiated: false,
            rtt: None,
            probe: None,
            now,
            max_retries: config.max_retries,
            max_retries_unconfirmed: config.max_retries_unconfirmed.min(config.max_retries),
            confirmed: false,
            last_block: 0,
            acked: 0,
            next: 1,
            max_sent: 0,
            oack: None,
            oack_due: false,
            repeats: 0,
            repeated_at: now,
            ahead: Vec::new(),
            ahead_at: 0,
            retries: 0,
            deadline: Some(now + config.timeout),
            error_due: None,
            outcome: None,
            blocks_sent: 0,
            retransmitted: 0,
            source,
        };
        t.apply(options);
        t.last_block = t.source.len() / t.blksize as u64 + 1;
        t
    }

    fn apply(&mut self, o: &Options) {
        self.blksize = o.blksize.map_or(DEFAULT_BLKSIZE, usize::from);
        self.windowsize = o.windowsize.map_or(1, u64::from);
        if let Some(s) = o.timeout {
            self.base_timeout = Duration::from_secs(u64::from(s));
            self.timeout_negotiated = true;
        }
    }

    /// Falls back to plain RFC 1350 for a client that keeps ignoring our OACK.
    fn drop_options(&mut self, now: Instant) {
        tracing::debug!("client ignores our OACK; falling back to RFC 1350 without options");
        self.oack = None;
        self.oack_due = false;
        self.blksize = DEFAULT_BLKSIZE;
        self.windowsize = 1;
        self.timeout_negotiated = false;
        self.last_block = self.source.len() / self.blksize as u64 + 1;
        self.next = 1;
        self.max_sent = 0;
        self.probe = None;
        self.retries = 0;
        self.arm(now);
    }

    /// The negotiated block size.
    pub fn blksize(&self) -> usize {
        self.blksize
    }

    /// The negotiated window size.
    pub fn windowsize(&self) -> u64 {
        self.windowsize
    }

    /// The options sent in our OACK, if any.
    pub fn oack(&self) -> Option<&[(String, String)]> {
        self.oack.as_deref()
    }

    /// DATA packets sent so far, and how many of them were retransmissions.
    pub fn stats(&self) -> (u64, u64) {
        (self.blocks_sent, self.retransmitted)
    }

    /// The current retransmission timeout: the negotiated one (RFC 2349) as is; else the
    /// measured one (or `timeout` before any measurement), doubled per retry, at most
    /// 8 times `timeout`.
    fn rto(&self) -> Duration {
        if self.timeout_negotiated {
            return self.base_timeout;
        }
        let first = self.rtt.map_or(self.base_timeout, |r| {
            r.rto().clamp(self.min_timeout, self.base_timeout)
        });
        first
            .saturating_mul(1 << self.retries.min(16))
            .min(self.base_timeout.saturating_mul(8))
    }

    fn arm(&mut self, now: Instant) {
        self.now = now;
        self.deadline = Some(now + self.rto());
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
        }
        self.deadline = None;
    }

    fn fail_with_error(&mut self, code: ErrorCode, message: &str, error: Error) {
        self.error_due = Some((code, message.to_owned()));
        self.finish(Outcome::Failed(error));
    }

    /// Handles a datagram from the client's TID (the driver checks the TID).
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        if self.outcome.is_some() {
            return;
        }
        self.now = now;
        match Packet::parse(bytes) {
            Ok(Packet::Ack(block)) => self.on_ack(now, block),
            Ok(Packet::Error { code, message }) => {
                if self.oack.is_some() && code == ErrorCode::OptionRefused {
                    self.finish(Outcome::Declined);
                } else {
                    self.finish(Outcome::Failed(Error::Peer { code, message }));
                }
            }
            Ok(Packet::Rrq(_)) => self.handle_repeated_request(now),
            // A duplicated OACK reaching the sending side of an upload (ClientWrite).
            Ok(Packet::Oack(_)) => {}
            Ok(other) => {
                let what = format!("unexpected opcode {} during a read", other.opcode());
                self.fail_with_error(
                    ErrorCode::IllegalOperation,
                    "Illegal TFTP operation",
                    Error::Malformed {
                        structure: "read transfer",
                        what,
                    },
                );
            }
            Err(e) => {
                self.fail_with_error(ErrorCode::IllegalOperation, "Illegal TFTP operation", e);
            }
        }
    }

    /// The client sent its request again (it did not see our first answer).
    ///
    /// While our OACK waits for ACK 0, the first repeat resends the OACK; the second means
    /// the client ignores OACKs, so we drop all options and answer with DATA 1 as plain
    /// RFC 1350 (RFC 2347: a client must accept a server that ignores options). Once
    /// data flows, repeats are ignored: the timer retransmits.
    ///
    /// A repeat counts only when it comes half a timeout or more after the transfer began
    /// or after the last counted one: a client retransmits on its timer, while copies
    /// the network duplicated or delayed arrive close together. Counting those could drop
    /// the options after the client had accepted the OACK, and it would then take a
    /// 512-byte DATA 1 for the short last block of its larger block size: a silently
    /// truncated file.
    pub fn handle_repeated_request(&mut self, now: Instant) {
        if self.outcome.is_some() || self.oack.is_none() {
            return;
        }
        if now.saturating_duration_since(self.repeated_at) < self.base_timeout / 2 {
            return;
        }
        self.repeated_at = now;
        self.repeats += 1;
        if self.repeats >= 2 {
            self.drop_options(now);
        } else {
            self.oack_due = true;
            self.arm(now);
        }
    }

    fn on_ack(&mut self, now: Instant, block: u16) {
        if self.oack.is_some() {
            if block == 0 {
                self.confirmed = true;
                self.oack = None;
                self.oack_due = false;
                self.retries = 0;
                self.arm(now);
            }
            return;
        }
        let abs = unwrap_block(self.acked, block);
        if abs <= self.acked || abs > self.max_sent {
            // Duplicate or stale: never answer with DATA (RFC 1123 §4.2.3.1).
            return;
        }
        if let Some((block, sent)) = self.probe
            && abs >= block
        {
            let sample = now.saturating_duration_since(sent);
            match &mut self.rtt {
                Some(r) => r.update(sample),
                None => self.rtt = Some(RttEstimator::new(sample)),
            }
            self.probe = None;
        }
        self.acked = abs;
        self.confirmed = true;
        self.retries = 0;
        if abs == self.last_block {
            self.finish(Outcome::Completed);
            return;
        }
        // An ACK short of what we sent means the client saw a gap (RFC 7440 §4):
        // resume from the block after it.
        self.next = abs + 1;
        self.arm(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.error_due.is_some() {
            return None;
        }
        self.deadline
    }

    /// Retransmits (the OACK or the window from the last ACK) or gives up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        let max = if self.confirmed {
            self.max_retries
        } else {
            self.max_retries_unconfirmed
        };
        match expire(self.deadline, now, &mut self.retries, max) {
            Expiry::NotYet => return,
            Expiry::GiveUp(e) => return self.finish(Outcome::Failed(e)),
            Expiry::Retry => {}
        }
        self.probe = None;
        if self.oack.is_some() {
            self.oack_due = true;
        } else {
            self.next = self.acked + 1;
        }
        self.arm(now);
    }

    /// Writes the next datagram to send into `buf` (at least 4 + blksize bytes) and
    /// returns its length, or `None` when nothing is due.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        if let Some((code, message)) = self.error_due.take() {
            return Packet::Error { code, message }.emit(buf).ok();
        }
        if self.outcome.is_some() {
            return None;
        }
        if let Some(oack) = &self.oack {
            if !self.oack_due {
                return None;
            }
            self.oack_due = false;
            let p = Packet::Oack(oack.clone());
            return match p.emit(buf) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.finish(Outcome::Failed(e));
                    None
                }
            };
        }
        let window_end = (self.acked + self.windowsize).min(self.last_block);
        if self.next > window_end {
            return None;
        }
        match self.emit_block(self.next, buf) {
            Ok(n) => {
                if self.next <= self.max_sent {
                    self.retransmitted += 1;
                } else if self.probe.is_none() {
                    self.probe = Some((self.next, self.now));
                }
                self.max_sent = self.max_sent.max(self.next);
                self.next += 1;
                self.blocks_sent += 1;
                Some(n)
            }
            Err(e) => {
                let (code, message) = e.to_wire();
                self.finish(Outcome::Failed(e));
                Packet::Error { code, message }.emit(buf).ok()
            }
        }
    }

    fn emit_block(&mut self, block: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let need = DATA_HEADER_LEN + self.blksize;
        if buf.len() < need {
            return Err(Error::BufferTooSmall {
                structure: "DATA",
                need,
                have: buf.len(),
            });
        }
        let offset = (block - 1) * self.blksize as u64;
        let expect = self
            .source
            .len()
            .saturating_sub(offset)
            .min(self.blksize as u64) as usize;
        emit_data_header(block as u16, buf)?;
        if self.blksize > READ_AHEAD / 2 {
            // The read-ahead would hold one block at a time: read it in place instead
            // of copying it once more.
            let data = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + expect];
            read_exact_at(&*self.source, offset, data)
                .map_err(|e| Error::io(format!("reading block {block}"), e))?;
            return Ok(DATA_HEADER_LEN + expect);
        }
        let ahead_end = self.ahead_at + self.ahead.len() as u64;
        if offset < self.ahead_at || offset + expect as u64 > ahead_end {
            self.read_ahead(offset, expect)
                .map_err(|e| Error::io(format!("reading block {block}"), e))?;
        }
        let at = (offset - self.ahead_at) as usize;
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + expect]
            .copy_from_slice(&self.ahead[at..at + expect]);
        Ok(DATA_HEADER_LEN + expect)
    }

    /// How the transfer ended, once it has (after any final ERROR was polled).
    pub fn outcome(&self) -> Option<&Outcome> {
        if self.error_due.is_some() {
            return None;
        }
        self.outcome.as_ref()
    }

    /// Takes the outcome out, once the transfer has ended.
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome()?;
        self.outcome.take()
    }

    /// True once the transfer has ended and has nothing left to send.
    pub fn is_finished(&self) -> bool {
        self.outcome().is_some()
    }
}

impl ReadTransfer {
    /// Fills the read-ahead buffer from `offset` with at least `expect` bytes.
    fn read_ahead(&mut self, offset: u64, expect: usize) -> std::io::Result<()> {
        let want = (self.source.len().saturating_sub(offset) as usize)
            .min(READ_AHEAD.max(self.blksize))
            .max(expect);
        self.ahead.resize(want, 0);
        self.ahead_at = offset;
        let got = read_at_most(&*self.source, offset, &mut self.ahead)?;
        self.ahead.truncate(got);
        if got < expect {
            return Err(shrank());
        }
        Ok(())
    }
}

/// Fills `buf` from `source` at `offset`; fewer bytes only at the source's end.
fn read_at_most(source: &dyn Source, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match source.read_at(offset + got as u64, &mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Fills all of `buf` from `source` at `offset`.
fn read_exact_at(source: &dyn Source, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    if read_at_most(source, offset, buf)? < buf.len() {
        return Err(shrank());
    }
    Ok(())
}

fn shrank() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "file shrank while being served",
    )
}

fn to_netascii(source: &dyn Source, max: u64) -> Result<Arc<dyn Source>, Error> {
    let len = source.len();
    if len > max {
        return Err(Error::refused(
            ErrorCode::NotDefined,
            "File too large for netascii mode; use octet",
        ));
    }
    let mut local = vec![0; len as usize];
    let mut got = 0;
    while got < local.len() {
        let n = source
            .read_at(got as u64, &mut local[got..])
            .map_err(|e| Error::io("reading a file for netascii conversion", e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    local.truncate(got);
    Ok(Arc::new(MemorySource::from(netascii::encode(&local))))
}
