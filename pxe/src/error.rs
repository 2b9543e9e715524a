//! The crate's one error type: which structure was wrong and how.

/// What went wrong, in a form small enough to `match` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bytes from the wire that do not form a valid message or option.
    Malformed,
    /// A message that cannot be encoded as asked (too large, bad value).
    Encode,
    /// A file (the lease database) could not be read or written.
    Io,
    /// A policy or configuration value that makes no sense.
    Config,
}

/// Errors of the DHCP/PXE codec, decisions and driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the structure needs.
    #[error("{structure} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// The structure being read.
        structure: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The four bytes after the BOOTP header are not the DHCP magic cookie.
    #[error("DHCP magic cookie missing: found {found:02x?}")]
    BadCookie {
        /// The bytes found instead.
        found: [u8; 4],
    },
    /// An option area without its END (255) option.
    #[error("option area `{area}` has no END option")]
    MissingEnd {
        /// `options`, `file` or `sname`.
        area: &'static str,
    },
    /// An option whose length runs past the end of its area.
    #[error("option {code} in `{area}` claims {len} bytes but only {left} remain")]
    OptionOverrun {
        /// The area holding the option.
        area: &'static str,
        /// The option code.
        code: u8,
        /// The length byte.
        len: usize,
        /// Bytes left in the area.
        left: usize,
    },
    /// Option 52 (overload) with a bad value, or found inside an overloaded area.
    #[error("option overload (52) invalid: {what}")]
    BadOverload {
        /// What was wrong.
        what: &'static str,
    },
    /// An option whose contents do not have the format its code requires.
    #[error("option {code} ({structure}) invalid: {what}")]
    BadOption {
        /// The option code (or sub-option code).
        code: u8,
        /// The structure being parsed.
        structure: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// More options than any real message holds.
    #[error("too many options: {count} (limit {limit})")]
    TooManyOptions {
        /// Options seen.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A message that does not fit the size the client accepts.
    #[error("message needs {need} bytes but the limit is {limit}")]
    TooLarge {
        /// Bytes needed.
        need: usize,
        /// The limit.
        limit: usize,
    },
    /// A configuration value that makes no sense.
    #[error("configuration: {0}")]
    Config(String),
    /// Reading or writing a file or socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The small matchable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Truncated { .. }
            | Error::BadCookie { .. }
            | Error::MissingEnd { .. }
            | Error::OptionOverrun { .. }
            | Error::BadOverload { .. }
            | Error::BadOption { .. }
            | Error::TooManyOptions { .. } => ErrorKind::Malformed,
            Error::TooLarge { .. } => ErrorKind::Encode,
            Error::Config(_) => ErrorKind::Config,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
