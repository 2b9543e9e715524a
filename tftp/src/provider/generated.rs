//! Providers for content made on request ([`Generated`], e.g. per-device iPXE scripts)
//! and for layering one provider over another ([`Fallback`]).

use std::net::SocketAddr;
use std::sync::Arc;

use super::{MemorySource, Provider, Sink, Source};
use crate::error::{Error, ErrorCode};

/// Serves bytes made by a function of the requested path and the client's address.
///
/// The function returns the file's bytes, or an [`Error`] such as
/// [`Error::not_found`] for names it does not generate.
///
/// ```
/// use tftp::provider::{Generated, Provider};
/// let scripts = Generated::new(|path: &str, peer: std::net::SocketAddr| {
///     if path == "boot.ipxe" {
///         Ok(format!("#!ipxe\necho hello {}\n", peer.ip()).into_bytes())
///     } else {
///         Err(tftp::Error::not_found())
///     }
/// });
/// let peer = "10.0.0.7:2000".parse().unwrap();
/// assert_eq!(scripts.open("boot.ipxe", peer).unwrap().len(), 27);
/// assert!(scripts.open("other", peer).is_err());
/// ```
pub struct Generated<F> {
    make: F,
}

impl<F> std::fmt::Debug for Generated<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Generated")
    }
}

impl<F> Generated<F>
where
    F: Fn(&str, SocketAddr) -> Result<Vec<u8>, Error> + Send + Sync,
{
    /// Serves what `make(path, peer)` returns.
    pub fn new(make: F) -> Self {
        Self { make }
    }
}

impl<F> Provider for Generated<F>
where
    F: Fn(&str, SocketAddr) -> Result<Vec<u8>, Error> + Send + Sync,
{
    fn open(&self, path: &str, peer: SocketAddr) -> Result<Arc<dyn Source>, Error> {
        let path = path.trim_start_matches(['/', '\\']);
        Ok(Arc::new(MemorySource::from((self.make)(path, peer)?)))
    }
}

/// Tries `first`, and `then` when `first` answers "file not found". Uploads go to `then`.
#[derive(Debug)]
pub struct Fallback<A, B> {
    first: A,
    then: B,
}

impl<A: Provider, B: Provider> Fallback<A, B> {
    /// Layers `first` over `then`.
    pub fn new(first: A, then: B) -> Self {
        Self { first, then }
    }
}

impl<A: Provider, B: Provider> Provider for Fallback<A, B> {
    fn open(&self, path: &str, peer: SocketAddr) -> Result<Arc<dyn Source>, Error> {
        match self.first.open(path, peer) {
            Err(Error::Refused {
                code: ErrorCode::FileNotFound,
                ..
            }) => self.then.open(path, peer),
            other => other,
        }
    }

    fn create(
        &self,
        path: &str,
        peer: SocketAddr,
        size: Option<u64>,
    ) -> Result<Box<dyn Sink>, Error> {
        self.then.create(path, peer, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_only_on_not_found() {
        let a = Generated::new(|p: &str, _| match p {
            "a" => Ok(b"A".to_vec()),
            "denied" => Err(Error::access_violation()),
            _ => Err(Error::not_found()),
        });
        let b = Generated::new(|_: &str, _| Ok(b"B".to_vec()));
        let f = Fallback::new(a, b);
        let peer = "[::1]:69".parse().unwrap();
        let mut buf = [0u8; 1];
        f.open("/a", peer).unwrap().read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"A");
        f.open("zzz", peer).unwrap().read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"B");
        assert!(f.open("denied", peer).is_err());
    }
}
