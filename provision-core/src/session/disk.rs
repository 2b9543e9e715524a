//! [`Session`]: the disk one boot of one device sees of one vDisk, shared by the
//! boot's connections to it, until the boot ends.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use nbd_proto::EndSignal;
use vhd::{Disk, Extent};

use super::stats::Counters;
use super::{Inner, Open, SessionInfo};

/// An open session. Connections share it (`Arc`); when the last one lets go, a
/// standard-mode write cache waits out the grace period for a reconnect with the same
/// boot token. A new boot of the device [ends](Session::is_ended) it: requests in
/// flight finish, later ones fail, its connections are told to close through
/// [`Session::end_signal`].
pub struct Session {
    pub(super) info: SessionInfo,
    pub(super) size: u64,
    pub(super) read_only: bool,
    /// `None` once ended.
    pub(super) disk: RwLock<Option<Open>>,
    pub(super) counters: Arc<Counters>,
    pub(super) inner: Arc<Inner>,
    pub(super) writer: Option<PathBuf>,
    pub(super) end: EndSignal,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn ended() -> vhd::Error {
    vhd::Error::Io {
        context: "the session ended (its device booted again)".to_owned(),
        source: std::io::Error::from(std::io::ErrorKind::NotConnected),
    }
}

impl Session {
    /// What this session is.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Fires when the session ends; transports close its connections then.
    pub fn end_signal(&self) -> EndSignal {
        self.end.clone()
    }

    /// True once the device's next boot (or an operator) ended this session.
    pub fn is_ended(&self) -> bool {
        self.end.is_ended()
    }

    /// Ends the session: waits for requests in flight, flushes a writer, lets go of
    /// its file and tells its connections to close.
    pub(super) fn end(&self) {
        let disk = self.disk.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(open) = disk {
            self.flush_writer(&*open.disk);
            drop(open);
            if let Some(writer) = &self.writer {
                self.inner.lock().writers.remove(writer);
            }
        }
        self.end.end();
        tracing::info!(id = self.info.id, device = %self.info.device, vdisk = %self.info.vdisk,
            boot = self.info.boot, "session ended by the device's new boot");
    }

    fn flush_writer(&self, disk: &dyn Disk) {
        if self.writer.is_some()
            && let Err(e) = disk.flush()
        {
            tracing::error!(id = self.info.id, error = %e, "flushing a closing session failed");
        }
    }

    /// Runs `op` on the disk unless the session has ended.
    fn with<T>(&self, op: impl FnOnce(&dyn Disk) -> vhd::Result<T>) -> vhd::Result<T> {
        match &*self.disk.read().unwrap_or_else(|p| p.into_inner()) {
            Some(open) => op(&*open.disk),
            None => Err(ended()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let disk = self
            .disk
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let release = disk.is_some();
        if let Some(open) = disk {
            self.flush_writer(&*open.disk);
        }
        self.inner.detach(self, release);
        tracing::info!(id = self.info.id, device = %self.info.device, "session closed");
    }
}

impl Disk for Session {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> vhd::Result<()> {
        let len = buf.len() as u64;
        self.counters
            .read(len, self.with(|d| d.read_at(buf, offset)))
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> vhd::Result<()> {
        self.counters
            .write(buf.len() as u64, self.with(|d| d.write_at(buf, offset)))
    }
    fn flush(&self) -> vhd::Result<()> {
        self.with(|d| d.flush())
    }
    fn is_read_only(&self) -> bool {
        self.read_only
    }
    fn allocation(&self, offset: u64, len: u64) -> vhd::Result<Vec<Extent>> {
        self.with(|d| d.allocation(offset, len))
    }
    /// Counted as a read: a server sends what this locates instead of reading it
    /// (nbd-proto's session locates a READ at most once and then never reads it, so
    /// each READ counts once; `tests/nbd_sessions.rs` checks every path).
    fn locate(&self, offset: u64, len: u64) -> vhd::Result<Option<Vec<vhd::Located>>> {
        match self.with(|d| d.locate(offset, len)) {
            Ok(None) => Ok(None),
            other => self.counters.read(len, other),
        }
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.counters
            .write(len, self.with(|d| d.write_zeroes(offset, len)))
    }
    fn trim(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.counters.write(0, self.with(|d| d.trim(offset, len)))
    }
}
