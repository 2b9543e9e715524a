//! The crate's one error type: which structure, what was wrong, and a small
//! [`ErrorKind`] for control flow.

use std::path::PathBuf;

/// What kind of failure an [`Error`] is, for callers that branch on it (an NBD server
/// maps `NoSpace` to `ENOSPC`, `ReadOnly` to `EPERM`, and so on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A write overlay or image reached its quota.
    NoSpace,
    /// A write to a read-only disk.
    ReadOnly,
    /// An access past the end of the virtual disk.
    OutOfRange,
    /// The image is damaged: bad cookie, checksum, table, or layout.
    Corrupt,
    /// A valid image using something this crate does not implement.
    Unsupported,
    /// A differencing image whose parent could not be found.
    ParentNotFound,
    /// A parent was found but is not the one the child was made from.
    ParentMismatch,
    /// A caller's argument is not acceptable (size, block size, path).
    InvalidInput,
    /// The operating system reported an I/O error.
    Io,
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A structure is shorter than it must be.
    #[error("{structure}: truncated, need {need} bytes, have {have}")]
    Truncated {
        /// Which structure.
        structure: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// A structure does not start with its cookie.
    #[error("{structure} at offset {offset}: bad cookie {found:?}, expected {expected:?}")]
    BadCookie {
        /// Which structure.
        structure: &'static str,
        /// Where in the file.
        offset: u64,
        /// The cookie found (lossy text).
        found: String,
        /// The cookie expected.
        expected: &'static str,
    },
    /// A structure's checksum does not match its bytes.
    #[error(
        "{structure} at offset {offset}: checksum {stored:#010x} stored, {computed:#010x} computed"
    )]
    Checksum {
        /// Which structure.
        structure: &'static str,
        /// Where in the file.
        offset: u64,
        /// The checksum in the file.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// A field holds a value that cannot be right.
    #[error("{structure}: bad {field}: {reason}")]
    Invalid {
        /// Which structure.
        structure: &'static str,
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Something this crate does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An access past the end of the disk.
    #[error("access of {len} bytes at offset {offset} is outside the disk of {size} bytes")]
    OutOfRange {
        /// First byte.
        offset: u64,
        /// Length.
        len: u64,
        /// Disk size.
        size: u64,
    },
    /// A write to a read-only disk.
    #[error("the disk is read-only")]
    ReadOnly,
    /// An overlay or image is full.
    #[error("no space: {0}")]
    NoSpace(String),
    /// The parent of a differencing image could not be found.
    #[error("parent {name:?} of {child} not found; tried: {}", display_paths(.tried))]
    ParentNotFound {
        /// The child.
        child: PathBuf,
        /// The parent's unicode name from the child's header.
        name: String,
        /// Every path tried, in order.
        tried: Vec<PathBuf>,
    },
    /// A parent does not carry the unique id the child expects.
    #[error(
        "parent {parent} of {child}: unique id {found} does not match the child's parent id {expected}"
    )]
    ParentMismatch {
        /// The child.
        child: PathBuf,
        /// The parent found.
        parent: PathBuf,
        /// The child's parent unique id.
        expected: String,
        /// The parent's unique id.
        found: String,
    },
    /// A chain refers back to an image already in it, or is absurdly deep.
    #[error("parent chain of {0} loops or is deeper than the limit")]
    ParentLoop(PathBuf),
    /// A caller's argument is not acceptable.
    #[error("invalid argument: {0}")]
    InvalidInput(String),
    /// The output would be written over a file the operation reads (the input, or an
    /// image of its chain), by the same name or through a link.
    #[error("{} is the same file as {}, which it would overwrite", .output.display(), .input.display())]
    WouldOverwrite {
        /// The output path given.
        output: PathBuf,
        /// The input (or chain member) it names.
        input: PathBuf,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing (no locator, no name)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// The kind of failure, for control flow.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Truncated { .. }
            | Error::BadCookie { .. }
            | Error::Checksum { .. }
            | Error::Invalid { .. }
            | Error::ParentLoop(_) => ErrorKind::Corrupt,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::OutOfRange { .. } => ErrorKind::OutOfRange,
            Error::ReadOnly => ErrorKind::ReadOnly,
            Error::NoSpace(_) => ErrorKind::NoSpace,
            Error::ParentNotFound { .. } => ErrorKind::ParentNotFound,
            Error::ParentMismatch { .. } => ErrorKind::ParentMismatch,
            Error::InvalidInput(_) | Error::WouldOverwrite { .. } => ErrorKind::InvalidInput,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                ErrorKind::NoSpace
            }
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(
        structure: &'static str,
        field: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            structure,
            field,
            reason: reason.into(),
        }
    }

    /// The `std::io::Error` an NBD or file front end would report for this error.
    pub fn to_io_error(&self) -> std::io::Error {
        let kind = match self.kind() {
            ErrorKind::NoSpace => std::io::ErrorKind::StorageFull,
            ErrorKind::ReadOnly => std::io::ErrorKind::PermissionDenied,
            ErrorKind::OutOfRange | ErrorKind::InvalidInput => std::io::ErrorKind::InvalidInput,
            ErrorKind::ParentNotFound => std::io::ErrorKind::NotFound,
            ErrorKind::Unsupported => std::io::ErrorKind::Unsupported,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self.to_string())
    }
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
