//! Advisory locks on the store's image files, so that one image has one writer across
//! processes (provisiond and the `provision` tool on the same store): a session that
//! writes an image (a maintenance version, a private disk) holds an exclusive lock on
//! it; merging or promoting a version takes the same lock, and is refused while a
//! session holds it.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

use crate::error::{Error, ErrorKind, Result};

/// How long a lock is tried again before it counts as held by someone else.
const FORK_WINDOW: Duration = Duration::from_millis(250);

/// An exclusive `flock(2)` on a file, held until dropped.
#[derive(Debug)]
pub(crate) struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    /// Locks `path` exclusively, or fails with a Conflict naming `holder` (who holds
    /// such locks) when someone else has it.
    pub(crate) fn exclusive(path: &Path, holder: &str) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        // A lock is held by an open file description, which a process that forks
        // shares with its child until the child's exec closes it: a lock just let go
        // may still be held for that long. A real holder holds on far longer.
        let started = Instant::now();
        let mut result = flock(&file, FlockOperation::NonBlockingLockExclusive);
        while result == Err(rustix::io::Errno::WOULDBLOCK) && started.elapsed() < FORK_WINDOW {
            std::thread::sleep(Duration::from_millis(5));
            result = flock(&file, FlockOperation::NonBlockingLockExclusive);
        }
        match result {
            Ok(()) => Ok(Self(file)),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::new(
                ErrorKind::Conflict,
                format!("{} is open read-write by {holder}", path.display()),
            )),
            Err(e) => Err(Error::Io {
                path: path.display().to_string(),
                source: e.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        std::fs::write(&path, b"x").unwrap();
        let held = FileLock::exclusive(&path, "a session").unwrap();
        let refused = FileLock::exclusive(&path, "a session").unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Conflict);
        assert!(
            refused.to_string().contains("open read-write by a session"),
            "{refused}"
        );
        drop(held);
        FileLock::exclusive(&path, "a session").unwrap();
    }
}
