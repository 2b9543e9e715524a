//! The server side of a write transfer (WRQ, off unless enabled): receives DATA blocks,
//! writes them to a [`Sink`] and acknowledges each window (RFC 1350, RFC 7440).
//!
//! ```text
//!   new(WRQ) --> [OACK or ACK 0 sent] --DATA n+1--> write, n += 1 --short block--> commit,
//!                    ^      |                           |                       final ACK,
//!                    |   DATA out of order /            | window full:          Completed
//!                    |   duplicate: ACK n again         | ACK n
//!                    '---- timeout: resend last ACK/OACK (retries capped) --> Failed
//! ```
//!
//! After the final ACK the transfer dallies (RFC 1350 §6) for three timeouts: if that
//! ACK was lost, the client's retransmitted last block is acknowledged again. The upload
//! is committed before the final ACK; [`WriteTransfer::committed`] says so at once.
//!
//! A netascii upload is decoded to local text (CR LF to LF) on the way to the sink.

use std::time::{Duration, Instant};

use super::{Expiry, Outcome, TransferConfig, backoff, expire, unwrap_block};
use crate::error::{Error, ErrorCode};
use crate::netascii::Decoder;
use crate::options::Options;
use crate::packet::{DEFAULT_BLKSIZE, Mode, Packet, Request};
use crate::provider::Sink;

/// A server write transfer in progress.
#[derive(Debug)]
pub struct WriteTransfer {
    sink: Option<Box<dyn Sink>>,
    netascii: Option<Decoder>,
    blksize: usize,
    windowsize: u64,
    base_timeout: Duration,
    timeout_negotiated: bool,
    max_retries: u32,
    /// Highest block received in order.
    received: u64,
    /// Bytes written to the sink.
    written: u64,
    /// Blocks received since our last ACK.
    in_window: u64,
    /// The OACK until the first DATA arrives.
    oack: Option<Vec<(String, String)>>,
    /// An ACK (or the OACK) must be sent.
    ack_due: bool,
    retries: u32,
    deadline: Option<Instant>,
    error_due: Option<(ErrorCode, String)>,
    outcome: Option<Outcome>,
    /// Until when a retransmitted last block is acknowledged again.
    dally_until: Option<Instant>,
}

impl WriteTransfer {
    /// Starts receiving into `sink` for `request`.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`]: ERROR 8 for an option value outside its RFC's range (see
    /// [`Options::from_request`]), ERROR 4 "Unknown mode" for `mail` and unknown modes.
    pub fn new(
        now: Instant,
        request: &Request,
        sink: Box<dyn Sink>,
        config: &TransferConfig,
    ) -> Result<Self, Error> {
        let netascii = match request.mode {
            Mode::Octet => None,
            Mode::Netascii => Some(Decoder::new()),
            Mode::Mail | Mode::Unknown(_) => {
                return Err(Error::refused(ErrorCode::IllegalOperation, "Unknown mode"));
            }
        };
        let requested = Options::from_request(&request.options)?;
        // A WRQ's tsize is the upload's size: echo it (RFC 2349).
        let accepted = Options::accept(&requested, &config.limits, requested.tsize);
        let mut t = Self {
            sink: Some(sink),
            netascii,
            blksize: accepted.blksize.map_or(DEFAULT_BLKSIZE, usize::from),
            windowsize: accepted.windowsize.map_or(1, u64::from),
            base_timeout: accepted
                .timeout
                .map_or(config.timeout, |s| Duration::from_secs(u64::from(s))),
            timeout_negotiated: accepted.timeout.is_some(),
            max_retries: config.max_retries,
            received: 0,
            written: 0,
            in_window: 0,
            oack: (!accepted.is_empty()).then(|| accepted.to_pairs()),
            ack_due: true,
            retries: 0,
            deadline: None,
            error_due: None,
            outcome: None,
            dally_until: None,
        };
        t.arm(now);
        Ok(t)
    }

    /// The negotiated block size.
    pub fn blksize(&self) -> usize {
        self.blksize
    }

    /// Bytes written to the sink so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn arm(&mut self, now: Instant) {
        self.deadline =
            Some(now + backoff(self.base_timeout, self.timeout_negotiated, self.retries));
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
        }
        self.deadline = None;
        self.sink = None; // dropping an uncommitted sink discards the upload
    }

    fn fail(&mut self, e: Error) {
        self.error_due = Some(e.to_wire());
        self.finish(Outcome::Failed(e));
    }

    /// Handles a datagram from the client's TID.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        if self.outcome.is_some() {
            if self.dally_until.is_some()
                && let Ok(Packet::Data { block, .. }) = Packet::parse(bytes)
                && block == self.received as u16
            {
                self.ack_due = true; // our final ACK was lost
            }
            return;
        }
        match Packet::parse(bytes) {
            Ok(Packet::Data { block, data }) => self.on_data(now, block, data),
            Ok(Packet::Error { code, message }) => {
                self.finish(Outcome::Failed(Error::Peer { code, message }))
            }
            Ok(Packet::Wrq(_)) => {
                // The client repeated its request: our OACK/ACK 0 was lost.
                if self.received == 0 {
                    self.ack_due = true;
                }
            }
            Ok(other) => self.fail(Error::Malformed {
                structure: "write transfer",
                what: format!("unexpected opcode {}", other.opcode()),
            }),
            Err(e) => self.fail(e),
        }
    }

    fn on_data(&mut self, now: Instant, block: u16, data: &[u8]) {
        if data.len() > self.blksize {
            return self.fail(Error::TooLong {
                structure: "DATA payload",
                len: data.len(),
                max: self.blksize,
            });
        }
        // Any DATA shows the client got our OACK: from now on we answer with ACKs.
        self.oack = None;
        let abs = unwrap_block(self.received, block);
        if abs != self.received + 1 {
            // Duplicate or out of order: say where we are (RFC 7440 §4); never write.
            self.in_window = 0;
            self.ack_due = true;
            return;
        }
        if let Err(e) = self.write(data) {
            return self.fail(e);
        }
        self.received = abs;
        self.retries = 0;
        self.in_window += 1;
        if data.len() < self.blksize {
            if let Some(mut d) = self.netascii.take() {
                let mut tail = Vec::new();
                d.finish(&mut tail);
                if let Err(e) = self.write_local(&tail) {
                    return self.fail(e);
                }
            }
            let committed = self.sink.take().map(|s| s.commit());
            if let Some(Err(e)) = committed {
                return self.fail(Error::io("committing an upload", e));
            }
            self.ack_due = true;
            self.finish(Outcome::Completed);
            self.dally_until = Some(now + self.base_timeout.saturating_mul(3));
            return;
        }
        if self.in_window >= self.windowsize {
            self.in_window = 0;
            self.ack_due = true;
        }
        self.arm(now);
    }

    fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        match &mut self.netascii {
            Some(d) => {
                let mut local = Vec::with_capacity(data.len());
                d.decode(data, &mut local);
                self.write_local(&local)
            }
            None => self.write_local(data),
        }
    }

    fn write_local(&mut self, data: &[u8]) -> Result<(), Error> {
        let Some(sink) = &mut self.sink else {
            return Ok(());
        };
        sink.write_at(self.written, data)
            .map_err(|e| Error::io("writing an upload", e))?;
        self.written = self.written.saturating_add(data.len() as u64);
        Ok(())
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.error_due.is_some() || self.ack_due {
            return None;
        }
        self.dally_until.or(self.deadline)
    }

    /// True once the whole upload was received and committed to the sink.
    pub fn committed(&self) -> bool {
        matches!(self.outcome, Some(Outcome::Completed))
    }

    /// Resends our last ACK (or OACK), or gives up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.dally_until.is_some_and(|d| now >= d) {
            self.dally_until = None;
        }
        if self.outcome.is_some() {
            return;
        }
        match expire(self.deadline, now, &mut self.retries, self.max_retries) {
            Expiry::NotYet => return,
            Expiry::GiveUp(e) => return self.finish(Outcome::Failed(e)),
            Expiry::Retry => {}
        }
        self.in_window = 0;
        self.ack_due = true;
        self.arm(now);
    }

    /// Writes the next datagram to send into `buf` and returns its length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        if let Some((code, message)) = self.error_due.take() {
            return Packet::Error { code, message }.emit(buf).ok();
        }
        if !std::mem::take(&mut self.ack_due) {
            return None;
        }
        let packet = match &self.oack {
            Some(o) => Packet::Oack(o.clone()),
            None => Packet::Ack(self.received as u16),
        };
        packet.emit(buf).ok()
    }

    /// How the transfer ended, once it has (after any final packet was polled).
    pub fn outcome(&self) -> Option<&Outcome> {
        if self.error_due.is_some() || self.ack_due || self.dally_until.is_some() {
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
