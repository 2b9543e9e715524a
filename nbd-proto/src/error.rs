//! The crate's one error type.

use thiserror::Error;

/// What went wrong while decoding or driving an NBD session.
///
/// Every variant names the structure and what was wrong with it; [`Error::kind`] gives a
/// small value for control flow.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A structure ended before its fixed fields did.
    #[error("{structure}: truncated, need {need} bytes, have {have}")]
    Truncated {
        structure: &'static str,
        need: usize,
        have: usize,
    },
    /// A magic number did not match: the stream is out of sync.
    #[error("{structure}: bad magic {found:#x}")]
    BadMagic { structure: &'static str, found: u64 },
    /// A field held a value the protocol forbids.
    #[error("{structure}: invalid {field}: {detail}")]
    Invalid {
        structure: &'static str,
        field: &'static str,
        detail: String,
    },
    /// A length beyond what this side accepts.
    #[error("{structure}: length {len} exceeds the limit {max}")]
    TooLong {
        structure: &'static str,
        len: u64,
        max: u64,
    },
    /// The peer refused something it must accept, or asked for something refused.
    #[error("refused: {0}")]
    Refused(String),
    /// The server answered a request with an error value.
    #[error("server replied {0}")]
    Server(crate::wire::errno::Errno),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// A timeout set by the session expired.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// I/O error of a driver.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A coarse classification of [`Error`](enum@Error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Malformed input from the peer (the connection must end).
    Protocol,
    /// A refusal by the peer.
    Refused,
    /// End of connection or timeout.
    Closed,
    /// Socket I/O.
    Io,
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Truncated { .. }
            | Error::BadMagic { .. }
            | Error::Invalid { .. }
            | Error::TooLong { .. } => ErrorKind::Protocol,
            Error::Refused(_) | Error::Server(_) => ErrorKind::Refused,
            Error::Closed | Error::Timeout(_) => ErrorKind::Closed,
            Error::Io(_) => ErrorKind::Io,
        }
    }

    pub(crate) fn invalid(
        structure: &'static str,
        field: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            structure,
            field,
            detail: detail.into(),
        }
    }
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
