//! vDisks over NBD: any [`vhd::Disk`] as an [`nbd_proto::Export`], and the export
//! provider that opens device sessions from export names.
//!
//! Export names: `<mac>/<vdisk>` opens that vDisk for the device, `<mac>` alone its
//! default (first assigned) vDisk. A device can open only what is assigned to it.
//! Several connections of one device to one vDisk share one session (so
//! `CAN_MULTI_CONN` holds and exclusive private disks admit parallel connections).
//!
//! # Trust model
//!
//! A device is identified by the MAC **it names** in the export name; the peer's
//! address plays no part. This is identification, not authentication: any client
//! that reaches the NBD port can claim any MAC, and so read (and, in private or
//! maintenance mode, write) whatever is assigned to that device. The rules enforced
//! here — an unknown or disabled device is refused (unless auto-add is on), a device
//! opens only the vDisks assigned to it, and a private disk is only ever its own
//! device's — hold between honest devices and against mistakes, not against a
//! client that lies about its MAC.
//!
//! Operators therefore keep NBD on an isolated boot network (a VLAN or segment that
//! only provisioned devices and the server reach) and bind the NBD listener to the
//! server's address on that network (`[nbd] listen` in `provisiond.toml`), never to a
//! routed or public interface. Refusals name the device and vDisk concerned, and
//! exports are not listed (`NBD_OPT_LIST` answers an empty list).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use nbd_proto::{Capabilities, Errno, Export, ExportListing, ExportProvider, Refusal, ZeroFlags};
use vhd::{Disk, ExtentState};

use crate::error::ErrorKind;
use crate::mac::Mac;
use crate::session::{Session, Sessions};

/// The NBD errno for a disk error: no space, read-only, out of range, or I/O.
pub fn errno(error: &vhd::Error) -> Errno {
    match error.kind() {
        vhd::ErrorKind::NoSpace => Errno::ENOSPC,
        vhd::ErrorKind::ReadOnly => Errno::EPERM,
        vhd::ErrorKind::OutOfRange | vhd::ErrorKind::InvalidInput => Errno::EINVAL,
        _ => Errno::EIO,
    }
}

/// Where `disk` stores `[offset, offset + len)`, as NBD runs for zero-copy reads (see
/// [`Export::locate`]); `None` when the disk cannot name them or the range is bad.
pub fn locate<D: Disk + ?Sized>(
    disk: &D,
    offset: u64,
    len: u64,
) -> Option<Vec<nbd_proto::Located>> {
    let runs = disk.locate(offset, len).ok()??;
    Some(
        runs.into_iter()
            .map(|run| match run {
                vhd::Located::File { file, offset, len } => {
                    nbd_proto::Located::File { file, offset, len }
                }
                vhd::Located::Zeros(n) => nbd_proto::Located::Zeros(n),
                vhd::Located::Bytes(b) => nbd_proto::Located::Bytes(b),
            })
            .collect(),
    )
}

fn log_errno(what: &str, offset: u64, error: &vhd::Error) -> Errno {
    let code = errno(error);
    tracing::warn!(request = what, offset, error = %error, errno = ?code, "disk request failed");
    code
}

/// A [`vhd::Disk`] served as an NBD export.
pub struct DiskExport<D: ?Sized> {
    disk: Arc<D>,
    description: Option<String>,
    shared: bool,
    fast_zero: bool,
}

impl<D: Disk + ?Sized> DiskExport<D> {
    /// Serves `disk`. `shared` says every connection of this export sees the same
    /// disk object (then `CAN_MULTI_CONN` is advertised).
    pub fn new(disk: Arc<D>, shared: bool) -> Self {
        Self {
            disk,
            description: None,
            shared,
            fast_zero: false,
        }
    }

    /// Says zeroing only marks ranges (a write overlay), so `NBD_CMD_FLAG_FAST_ZERO`
    /// requests are carried out; otherwise they fail at once with `ENOTSUP`, as the
    /// protocol asks of a server whose zeroing would write zeroes.
    pub fn with_fast_zero(mut self, fast_zero: bool) -> Self {
        self.fast_zero = fast_zero;
        self
    }

    /// Sets the description NBD_OPT_INFO and NBD_OPT_LIST report.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

impl<D: Disk + ?Sized> Export for DiskExport<D> {
    fn size(&self) -> u64 {
        self.disk.size()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::CACHE;
        if self.disk.is_read_only() {
            caps |= Capabilities::READ_ONLY;
        } else {
            caps |= Capabilities::FLUSH
                | Capabilities::FUA
                | Capabilities::TRIM
                | Capabilities::WRITE_ZEROES
                | Capabilities::FAST_ZERO;
        }
        if self.shared {
            caps |= Capabilities::MULTI_CONN;
        }
        caps
    }

    fn description(&self) -> Option<String> {
        self.description.clone()
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        self.disk
            .read_at(buf, offset)
            .map_err(|e| log_errno("read", offset, &e))
    }

    fn write(&self, data: &[u8], offset: u64, fua: bool) -> Result<(), Errno> {
        self.disk
            .write_at(data, offset)
            .map_err(|e| log_errno("write", offset, &e))?;
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), Errno> {
        self.disk.flush().map_err(|e| log_errno("flush", 0, &e))
    }

    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), Errno> {
        self.disk
            .trim(offset, len)
            .map_err(|e| log_errno("trim", offset, &e))?;
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<(), Errno> {
        if flags.fast && !self.fast_zero {
            return Err(Errno::ENOTSUP);
        }
        self.disk
            .write_zeroes(offset, len)
            .map_err(|e| log_errno("write_zeroes", offset, &e))?;
        if flags.fua {
            self.flush()?;
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<nbd_proto::Extent>, Errno> {
        let extents = self
            .disk
            .allocation(offset, len)
            .map_err(|e| log_errno("block_status", offset, &e))?;
        Ok(extents
            .into_iter()
            .map(|e| match e.state {
                ExtentState::Data => nbd_proto::Extent::data(e.len),
                ExtentState::Zero => nbd_proto::Extent::hole(e.len),
            })
            .collect())
    }
    fn locate(&self, offset: u64, len: u64) -> Option<Vec<nbd_proto::Located>> {
        locate(&*self.disk, offset, len)
    }
}

/// Open sessions by (device, vDisk as named in the export, `None` for the default).
type OpenSessions = HashMap<(Mac, Option<String>), Weak<Session>>;

/// Opens device sessions for NBD clients by export name (`<mac>/<vdisk>` or `<mac>`).
pub struct SessionExports {
    sessions: Sessions,
    open: Mutex<OpenSessions>,
}

impl SessionExports {
    /// A provider over `sessions`.
    pub fn new(sessions: Sessions) -> Self {
        Self {
            sessions,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The session for an export name, shared with the device's other connections.
    pub fn session(&self, name: &str) -> Result<Arc<Session>, Refusal> {
        let (mac, vdisk) = match name.split_once('/') {
            Some((mac, vdisk)) => (mac, Some(vdisk.to_owned())),
            None => (name, None),
        };
        let mac: Mac = mac.parse().map_err(|_| Refusal::Unknown)?;
        let key = (mac, vdisk);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(session) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(session);
        }
        let session = match self.sessions.open(mac, key.1.as_deref()) {
            Ok(session) => Arc::new(session),
            Err(e) => {
                tracing::warn!(export = name, error = %e, "NBD export refused");
                return Err(match e.kind() {
                    ErrorKind::NotFound
                    | ErrorKind::Refused
                    | ErrorKind::Conflict
                    | ErrorKind::Invalid => Refusal::Policy(e.to_string()),
                    _ => Refusal::Platform(e.to_string()),
                });
            }
        };
        open.retain(|_, weak| weak.strong_count() > 0);
        open.insert(key, Arc::downgrade(&session));
        Ok(session)
    }
}

impl ExportProvider for SessionExports {
    fn open(&self, name: &str, _peer: SocketAddr) -> Result<Arc<dyn Export>, Refusal> {
        let session = self.session(name)?;
        let info = session.info();
        let description = format!(
            "{} on {} ({}), version {}, {:?}",
            info.vdisk, info.device, info.mac, info.version, info.mode
        );
        Ok(Arc::new(
            DiskExport::new(session, true).with_description(description),
        ))
    }

    /// Devices are not enumerated to anonymous clients: the list is empty.
    fn list(&self, _peer: SocketAddr) -> Vec<ExportListing> {
        Vec::new()
    }
}
