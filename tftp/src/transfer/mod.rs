//! Sans-IO transfers: the state machines that turn received datagrams and the current
//! time into datagrams to send and the next deadline. No sockets, no clocks, no sleeping.
//!
//! Every transfer has the same four-call surface (STYLE.md):
//! `handle_datagram(now, bytes)`, `poll_transmit(buf)`, `poll_timeout()` and
//! `handle_timeout(now)`, plus `outcome()` once it has ended.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::options::Limits;

pub mod client;
pub mod read;
pub mod write;

pub use client::{ClientRead, ClientWrite};
pub use read::ReadTransfer;
pub use write::WriteTransfer;

/// How a transfer ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every block was sent and acknowledged (or received and acknowledged).
    Completed,
    /// The client read our OACK and ended with ERROR 8: a size probe (PXE ROMs and EDK2
    /// ask for tsize this way, then request again). Not a failure.
    Declined,
    /// The transfer failed: the peer's error, a timeout, a bad packet or an I/O error.
    Failed(Error),
}

impl Outcome {
    /// True for [`Outcome::Completed`] and [`Outcome::Declined`].
    pub fn is_success(&self) -> bool {
        !matches!(self, Self::Failed(_))
    }
}

/// Timing and limits shared by every transfer.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Limits on negotiated options.
    pub limits: Limits,
    /// First retransmission timeout when the peer negotiated none; it doubles on each
    /// retry up to 8 times this value (RFC 1123 §4.2.3.2: exponential backoff).
    pub timeout: Duration,
    /// Lower bound of the adaptive retransmission timeout of read transfers, which
    /// otherwise follows the measured round-trip time (RFC 1123 §4.2.3.2, computed as in
    /// RFC 6298) and never exceeds `timeout`.
    pub min_timeout: Duration,
    /// Retransmissions of one packet or window before the transfer is given up.
    pub max_retries: u32,
    /// Retransmissions of a read's first answer (OACK or DATA 1) before the client has
    /// acknowledged anything: a spoofed request draws at most this many (SPECS §3.5).
    pub max_retries_unconfirmed: u32,
    /// Largest file served in netascii mode (converted in memory, since its netascii size
    /// is unknown until converted).
    pub max_netascii_size: u64,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            timeout: Duration::from_secs(1),
            min_timeout: Duration::from_millis(50),
            max_retries: 8,
            max_retries_unconfirmed: 3,
            max_netascii_size: 64 << 20,
        }
    }
}

/// What a deadline means at a given time.
pub(crate) enum Expiry {
    /// Not reached (or none set).
    NotYet,
    /// Reached: retransmit (the retry is counted).
    Retry,
    /// Reached after the last allowed retry: give up.
    GiveUp(Error),
}

/// Checks `deadline` at `now`, counting a retry in `retries` up to `max_retries`.
pub(crate) fn expire(
    deadline: Option<Instant>,
    now: Instant,
    retries: &mut u32,
    max_retries: u32,
) -> Expiry {
    if deadline.is_none_or(|d| now < d) {
        return Expiry::NotYet;
    }
    if *retries >= max_retries {
        return Expiry::GiveUp(Error::TimedOut { retries: *retries });
    }
    *retries += 1;
    Expiry::Retry
}

/// The retransmission timeout for the `retries`-th retry.
pub(crate) fn backoff(base: Duration, negotiated: bool, retries: u32) -> Duration {
    if negotiated {
        base
    } else {
        base.saturating_mul(1 << retries.min(3))
    }
}

/// Round-trip time estimate (RFC 6298 §2) for an adaptive retransmission timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
}

impl RttEstimator {
    /// The first estimate, from one sample.
    pub(crate) fn new(sample: Duration) -> Self {
        Self {
            srtt: sample,
            rttvar: sample / 2,
        }
    }

    /// Folds in a sample (Karn: only from blocks sent once).
    pub(crate) fn update(&mut self, sample: Duration) {
        let diff = self.srtt.abs_diff(sample);
        self.rttvar = (self.rttvar * 3 + diff) / 4;
        self.srtt = (self.srtt * 7 + sample) / 8;
    }

    /// The retransmission timeout: srtt + 4 rttvar.
    pub(crate) fn rto(&self) -> Duration {
        self.srtt + self.rttvar * 4
    }
}

/// The absolute block number that `wire` (16 bits, wrapping to 0 after 65535) names,
/// searching upwards from `from`.
pub(crate) fn unwrap_block(from: u64, wire: u16) -> u64 {
    let delta = wire.wrapping_sub(from as u16);
    from + u64::from(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_numbers_unwrap_past_65535() {
        assert_eq!(unwrap_block(0, 0), 0);
        assert_eq!(unwrap_block(65535, 0), 65536);
        assert_eq!(unwrap_block(65530, 3), 65539);
        assert_eq!(unwrap_block(70000, 70001u64 as u16), 70001);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs(1);
        assert_eq!(backoff(s, false, 0), s);
        assert_eq!(backoff(s, false, 2), 4 * s);
        assert_eq!(backoff(s, false, 10), 8 * s);
        assert_eq!(backoff(s, true, 10), s);
    }
}
