//! Per-session counters (requests, bytes, errors), kept without locks on the I/O path,
//! and the totals per device and vDisk that outlive sessions, for metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What a session (or all sessions of one device on one vDisk) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Read requests.
    pub reads: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Write requests (writes, zeroing, trims).
    pub writes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Requests that failed.
    pub errors: u64,
}

impl SessionStats {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &SessionStats) {
        self.reads += other.reads;
        self.read_bytes += other.read_bytes;
        self.writes += other.writes;
        self.write_bytes += other.write_bytes;
        self.errors += other.errors;
    }
}

/// Live counters of one session.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    reads: AtomicU64,
    read_bytes: AtomicU64,
    writes: AtomicU64,
    write_bytes: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    pub(crate) fn read<T, E>(&self, bytes: u64, result: Result<T, E>) -> Result<T, E> {
        self.reads.fetch_add(1, Relaxed);
        self.count(&self.read_bytes, bytes, result)
    }

    pub(crate) fn write<T, E>(&self, bytes: u64, result: Result<T, E>) -> Result<T, E> {
        self.writes.fetch_add(1, Relaxed);
        self.count(&self.write_bytes, bytes, result)
    }

    fn count<T, E>(&self, counter: &AtomicU64, bytes: u64, result: Result<T, E>) -> Result<T, E> {
        if result.is_ok() {
            counter.fetch_add(bytes, Relaxed);
        } else {
            self.errors.fetch_add(1, Relaxed);
        }
        result
    }

    pub(crate) fn snapshot(&self) -> SessionStats {
        SessionStats {
            reads: self.reads.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            writes: self.writes.load(Relaxed),
            write_bytes: self.write_bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}
