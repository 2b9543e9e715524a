//! File providers: where a transfer's bytes come from ([`Provider::open`] gives a
//! [`Source`]) and go to ([`Provider::create`] gives a [`Sink`]).
//!
//! A provider sees the requested path and the peer's address, so it can confine paths to
//! a directory ([`DirProvider`]) or generate per-device content ([`Generated`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::Error;

pub mod dir;
pub mod generated;

pub use dir::DirProvider;
pub use generated::{Fallback, Generated};

/// An open, read-only file with a known size. Many transfers may read one source at
/// once (positional reads, no shared cursor).
pub trait Source: Send + Sync + fmt::Debug {
    /// Size in bytes.
    fn len(&self) -> u64;

    /// True when the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads bytes at `offset` into `buf`, returning how many were read (fewer only at
    /// the end of the source).
    ///
    /// # Errors
    ///
    /// The underlying I/O error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// Bytes in memory as a source (generated files, netascii conversions, small cached files).
#[derive(Clone, PartialEq, Eq)]
pub struct MemorySource(pub Arc<[u8]>);

impl fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemorySource({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for MemorySource {
    fn from(v: Vec<u8>) -> Self {
        Self(v.into())
    }
}

impl Source for MemorySource {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
}

/// Where an upload goes. Dropping a sink without [`commit`](Sink::commit) discards the
/// upload (nothing half-written becomes visible).
pub trait Sink: Send + fmt::Debug {
    /// Writes `data` at `offset`.
    ///
    /// # Errors
    ///
    /// The underlying I/O error (a full disk becomes TFTP error 3).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Makes the complete upload visible under its name.
    ///
    /// # Errors
    ///
    /// The underlying I/O error.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// Serves files to transfers: opens them for reading and, when uploads are allowed,
/// creates them for writing.
pub trait Provider: Send + Sync {
    /// Opens `path` (as the client sent it) for `peer`.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] with the TFTP error for the client (1 file not found,
    /// 2 access violation, ...), or [`Error::Io`].
    fn open(&self, path: &str, peer: SocketAddr) -> Result<Arc<dyn Source>, Error>;

    /// Creates `path` for an upload from `peer`; `size` is the client's tsize if sent.
    /// By default uploads are refused with an access violation.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open); 3 disk full when `size` does not fit, 6 file exists.
    fn create(
        &self,
        path: &str,
        peer: SocketAddr,
        size: Option<u64>,
    ) -> Result<Box<dyn Sink>, Error> {
        let _ = (path, peer, size);
        Err(Error::refused(
            crate::ErrorCode::AccessViolation,
            "Uploads are not allowed",
        ))
    }
}

impl<P: Provider + ?Sized> Provider for Arc<P> {
    fn open(&self, path: &str, peer: SocketAddr) -> Result<Arc<dyn Source>, Error> {
        (**self).open(path, peer)
    }

    fn create(
        &self,
        path: &str,
        peer: SocketAddr,
        size: Option<u64>,
    ) -> Result<Box<dyn Sink>, Error> {
        (**self).create(path, peer, size)
    }
}

impl<P: Provider + ?Sized> Provider for Box<P> {
    fn open(&self, path: &str, peer: SocketAddr) -> Result<Arc<dyn Source>, Error> {
        (**self).open(path, peer)
    }

    fn create(
        &self,
        path: &str,
        peer: SocketAddr,
        size: Option<u64>,
    ) -> Result<Box<dyn Sink>, Error> {
        (**self).create(path, peer, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_source_reads_positionally() {
        let s = MemorySource::from(b"hello world".to_vec());
        let mut buf = [0u8; 5];
        assert_eq!(s.read_at(6, &mut buf).unwrap(), 5);
        assert_eq!(&buf, b"world");
        assert_eq!(s.read_at(9, &mut buf).unwrap(), 2);
        assert_eq!(s.read_at(99, &mut buf).unwrap(), 0);
        assert_eq!(s.read_at(u64::MAX, &mut buf).unwrap(), 0);
    }
}
