//! The crate's one error type: which structure, and what was wrong with it.

/// What went wrong, for control flow (see [`Error::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended before the structure did: wait for more bytes.
    Truncated,
    /// The bytes are not a valid structure; the connection should end (or answer Reject).
    Malformed,
    /// A header or data digest did not match (RFC 7143 §13.1).
    Digest,
    /// The peer broke a rule of the protocol's state machine.
    Protocol,
}

/// An error of the iSCSI crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the structure needs.
    #[error("{structure} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// The structure being read.
        structure: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// A length field larger than allowed.
    #[error("{structure}: {field} is {value}, more than the limit {limit}")]
    TooLong {
        /// The structure being read.
        structure: &'static str,
        /// The field.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The limit.
        limit: usize,
    },
    /// A field holds a value the structure does not allow.
    #[error("{structure}: invalid {field}: {detail}")]
    Invalid {
        /// The structure being read.
        structure: &'static str,
        /// The field.
        field: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A CRC32C digest did not match.
    #[error("{structure} digest mismatch: received {received:#010x}, computed {computed:#010x}")]
    Digest {
        /// `"header"` or `"data"`.
        structure: &'static str,
        /// The digest on the wire.
        received: u32,
        /// The digest of the bytes received.
        computed: u32,
    },
    /// The peer broke the protocol (the connection ends).
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl Error {
    /// The kind of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Truncated { .. } => ErrorKind::Truncated,
            Error::TooLong { .. } | Error::Invalid { .. } => ErrorKind::Malformed,
            Error::Digest { .. } => ErrorKind::Digest,
            Error::Protocol(_) => ErrorKind::Protocol,
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
