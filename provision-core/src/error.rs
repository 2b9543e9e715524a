//! The one error type of provision-core, with a small matchable kind.

use std::fmt;

/// What went wrong, for control flow (HTTP status, CLI exit code, NBD error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named device, vDisk, version or collection does not exist.
    NotFound,
    /// The change conflicts with the current state (a duplicate name, a version in the
    /// wrong state, an exclusive resource in use).
    Conflict,
    /// An argument is malformed or out of range.
    Invalid,
    /// The device may not do this (disabled, unknown, not assigned).
    Refused,
    /// The database or the file system failed.
    Storage,
}

/// An error of provision-core: its kind and a message that names the object concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A domain rule was broken; the message says which object and which rule.
    #[error("{message}")]
    Domain {
        /// The kind of failure.
        kind: ErrorKind,
        /// A sentence naming the object and what was wrong.
        message: String,
    },
    /// The store's database failed.
    #[error("store database: {0}")]
    Database(#[from] rusqlite::Error),
    /// A vDisk image could not be opened, created or changed.
    #[error("image: {0}")]
    Image(#[from] vhd::Error),
    /// A file of the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Domain { kind, .. } => *kind,
            Error::Image(e) if e.kind() == vhd::ErrorKind::InvalidInput => ErrorKind::Invalid,
            Error::Image(e) if e.kind() == vhd::ErrorKind::ReadOnly => ErrorKind::Refused,
            Error::Image(_) | Error::Database(_) | Error::Io { .. } => ErrorKind::Storage,
        }
    }

    pub(crate) fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Error::Domain {
            kind,
            message: message.to_string(),
        }
    }

    pub(crate) fn not_found(what: &str, name: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("{what} `{name}` does not exist"),
        )
    }
}

/// The result type of provision-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
