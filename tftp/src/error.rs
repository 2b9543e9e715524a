//! The crate's one error type, [`Error`], and the TFTP error codes carried in ERROR
//! packets ([`ErrorCode`], RFC 1350 §5 and RFC 2347).

use std::fmt;

/// The error code of an ERROR packet (RFC 1350 §5; code 8 from RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    NotDefined,
    /// 1: file not found.
    FileNotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTid,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: option negotiation refused or transfer terminated (RFC 2347).
    OptionRefused,
    /// Any other code, kept as received.
    Unknown(u16),
}

impl ErrorCode {
    /// The code for its number on the wire.
    pub fn from_u16(n: u16) -> Self {
        match n {
            0 => Self::NotDefined,
            1 => Self::FileNotFound,
            2 => Self::AccessViolation,
            3 => Self::DiskFull,
            4 => Self::IllegalOperation,
            5 => Self::UnknownTid,
            6 => Self::FileExists,
            7 => Self::NoSuchUser,
            8 => Self::OptionRefused,
            n => Self::Unknown(n),
        }
    }

    /// The number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::NotDefined => 0,
            Self::FileNotFound => 1,
            Self::AccessViolation => 2,
            Self::DiskFull => 3,
            Self::IllegalOperation => 4,
            Self::UnknownTid => 5,
            Self::FileExists => 6,
            Self::NoSuchUser => 7,
            Self::OptionRefused => 8,
            Self::Unknown(n) => n,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.to_u16(), self)
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A packet ended before a field it must hold.
    #[error("{structure}: truncated, need {need} bytes, have {have}")]
    Truncated {
        /// The packet or field being read.
        structure: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A string field has no terminating NUL byte.
    #[error("{structure}: field `{field}` is not NUL-terminated")]
    Unterminated {
        /// The packet being read.
        structure: &'static str,
        /// The field without its NUL.
        field: &'static str,
    },
    /// A packet is well framed but its content breaks a rule.
    #[error("{structure}: {what}")]
    Malformed {
        /// The packet or option being read.
        structure: &'static str,
        /// What was wrong.
        what: String,
    },
    /// A packet is larger than the protocol allows.
    #[error("{structure}: {len} bytes exceed the limit of {max}")]
    TooLong {
        /// The packet being read or written.
        structure: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An output buffer is too small for the packet to write.
    #[error("{structure}: needs a {need}-byte buffer, got {have}")]
    BufferTooSmall {
        /// The packet being written.
        structure: &'static str,
        /// Bytes needed.
        need: usize,
        /// Buffer size.
        have: usize,
    },
    /// We refuse a request: the code and message go to the peer in an ERROR packet.
    #[error("refused with TFTP error {code}: {message}")]
    Refused {
        /// The code sent to the peer.
        code: ErrorCode,
        /// The message sent to the peer.
        message: String,
    },
    /// The peer ended the transfer with an ERROR packet.
    #[error("peer sent TFTP error {code}: {message}")]
    Peer {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's message.
        message: String,
    },
    /// The peer stopped answering: every retransmission went unanswered.
    #[error("transfer timed out after {retries} retransmissions")]
    TimedOut {
        /// Retransmissions made before giving up.
        retries: u32,
    },
    /// Reading or writing a file failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The small matchable kind of an [`Error`], for control flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad bytes on the wire (truncated, unterminated, malformed, too long).
    Malformed,
    /// An output buffer was too small.
    BufferTooSmall,
    /// We refused the request.
    Refused,
    /// The peer sent an ERROR packet.
    Peer,
    /// The peer stopped answering.
    TimedOut,
    /// A file operation failed.
    Io,
}

impl Error {
    /// The kind of error, for control flow.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Truncated { .. }
            | Self::Unterminated { .. }
            | Self::Malformed { .. }
            | Self::TooLong { .. } => ErrorKind::Malformed,
            Self::BufferTooSmall { .. } => ErrorKind::BufferTooSmall,
            Self::Refused { .. } => ErrorKind::Refused,
            Self::Peer { .. } => ErrorKind::Peer,
            Self::TimedOut { .. } => ErrorKind::TimedOut,
            Self::Io { .. } => ErrorKind::Io,
        }
    }

    /// A refusal with `code` and `message`, sent to the peer as an ERROR packet.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    /// The file-not-found refusal.
    pub fn not_found() -> Self {
        Self::refused(ErrorCode::FileNotFound, "File not found")
    }

    /// The access-violation refusal.
    pub fn access_violation() -> Self {
        Self::refused(ErrorCode::AccessViolation, "Access violation")
    }

    /// An I/O error with what we were doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The ERROR packet (code, message) that tells a peer about this error.
    ///
    /// Internal details of I/O errors are not sent: the peer learns only the class.
    pub fn to_wire(&self) -> (ErrorCode, String) {
        match self {
            Self::Refused { code, message } => (*code, message.clone()),
            Self::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => (ErrorCode::FileNotFound, "File not found".into()),
                std::io::ErrorKind::PermissionDenied => {
                    (ErrorCode::AccessViolation, "Access violation".into())
                }
                std::io::ErrorKind::StorageFull => (ErrorCode::DiskFull, "Disk full".into()),
                _ => (ErrorCode::NotDefined, "I/O error".into()),
            },
            Self::TimedOut { .. } => (ErrorCode::NotDefined, "Timed out".into()),
            Self::Peer { .. } => (ErrorCode::NotDefined, "Transfer aborted".into()),
            Self::Truncated { .. }
            | Self::Unterminated { .. }
            | Self::Malformed { .. }
            | Self::TooLong { .. } => {
                (ErrorCode::IllegalOperation, "Illegal TFTP operation".into())
            }
            Self::BufferTooSmall { .. } => (ErrorCode::NotDefined, "Internal error".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for n in 0..20u16 {
            assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
        }
        assert_eq!(ErrorCode::from_u16(8), ErrorCode::OptionRefused);
        assert_eq!(ErrorCode::from_u16(99), ErrorCode::Unknown(99));
    }

    #[test]
    fn io_errors_map_to_wire_codes() {
        let e = Error::io(
            "opening",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.to_wire().0, ErrorCode::FileNotFound);
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(
            Error::access_violation().to_wire().0,
            ErrorCode::AccessViolation
        );
    }
}
