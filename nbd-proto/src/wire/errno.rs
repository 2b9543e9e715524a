//! Error values carried in replies (SPECS §1.7): the protocol's own numbers, never the
//! host's errno.

use std::fmt;

/// An NBD error value, as sent in a simple reply or an ERROR chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub u32);

impl Errno {
    /// Operation not permitted (writes to a read-only export).
    pub const EPERM: Errno = Errno(1);
    /// Input/output error.
    pub const EIO: Errno = Errno(5);
    /// Cannot allocate memory (avoid).
    pub const ENOMEM: Errno = Errno(12);
    /// Invalid argument (out of range, bad flags, misaligned).
    pub const EINVAL: Errno = Errno(22);
    /// No space left (writes past the end, write cache full).
    pub const ENOSPC: Errno = Errno(28);
    /// Value too large (DF read too long).
    pub const EOVERFLOW: Errno = Errno(75);
    /// Not supported (FAST_ZERO that would not be fast).
    pub const ENOTSUP: Errno = Errno(95);
    /// Server shutting down.
    pub const ESHUTDOWN: Errno = Errno(108);

    /// The symbolic name, for logs.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "OK",
            1 => "EPERM",
            5 => "EIO",
            12 => "ENOMEM",
            22 => "EINVAL",
            28 => "ENOSPC",
            75 => "EOVERFLOW",
            95 => "ENOTSUP",
            108 => "ESHUTDOWN",
            _ => "unknown errno",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl std::error::Error for Errno {}
