//! vDisks over NBD: any [`vhd::Disk`] as an [`nbd_proto::Export`], and the export
//! provider that opens device sessions from export names.
//!
//! Export names: `<mac>/<vdisk>/<token>`, where the token is the device's current boot
//! token (its iPXE script writes the name onto the kernel command line) or its attach
//! secret (for a hypervisor that attaches a VM's disk). Connections of one boot to one
//! vDisk share one session (so `CAN_MULTI_CONN` holds and exclusive private disks admit
//! parallel connections), at most [`CONNECTIONS_PER_SESSION`] of them; when the device
//! boots again, the server closes them.
//!
//! # Trust model
//!
//! See [`crate::Boot`]: a client must have seen the device's current script (served
//! only to the address the device's boot exchange showed) or hold its attach secret.
//! MAC and vDisk alone open nothing. This keeps other hosts out of a device's disk; a
//! spoofer on the same L2 segment who sniffs the device's traffic is stopped only by
//! encryption, so operators still keep NBD on the boot network. Refusals name the
//! device and say why (in the log and to the client), and exports are not listed
//! (`NBD_OPT_LIST` answers an empty list).

use std::net::SocketAddr;
use std::sync::Arc;

use nbd_proto::{
    Capabilities, EndSignal, Errno, Export, ExportListing, ExportProvider, Refusal, ZeroFlags,
};
use vhd::{Disk, ExtentState};

use crate::boot::Token;
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
    end: Option<EndSignal>,
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
            end: None,
        }
    }

    /// Closes the export's connections when `end` fires.
    pub fn with_end_signal(mut self, end: EndSignal) -> Self {
        self.end = Some(end);
        self
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

    fn end_signal(&self) -> Option<EndSignal> {
        self.end.clone()
    }
}

/// Most connections one session admits (a device's own client uses one, or a few with
/// multi-connection); more are refused so one client cannot hold the server's slots.
pub const CONNECTIONS_PER_SESSION: usize = 16;

/// Opens device sessions for NBD clients by export name (`<mac>/<vdisk>/<token>`).
pub struct SessionExports {
    sessions: Sessions,
}

/// The parts of an export name (`<mac>/<vdisk>/<token>`), or why it is not one.
///
/// ```
/// use provision_core::adapters::nbd::parse_export_name;
/// let (mac, vdisk, _) =
///     parse_export_name("52:54:00:00:00:01/lab/00112233445566778899aabbccddeeff").unwrap();
/// assert_eq!((mac.to_string().as_str(), vdisk), ("52:54:00:00:00:01", "lab"));
/// assert!(parse_export_name("52:54:00:00:00:01/lab").is_err());
/// ```
pub fn parse_export_name(name: &str) -> Result<(Mac, &str, Token), String> {
    let mut parts = name.split('/');
    let (Some(mac), Some(vdisk), Some(token), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "export `{name}` refused: export names are <mac>/<vdisk>/<boot token or attach \
             secret>; a device's iPXE script writes its name on the kernel command line, and \
             `provision device attach-secret` gives hypervisors theirs"
        ));
    };
    let mac: Mac = mac.parse().map_err(|e: crate::Error| e.to_string())?;
    let token: Token = token
        .parse()
        .map_err(|_| format!("export for {mac}: the token is not 32 hex digits"))?;
    Ok((mac, vdisk, token))
}

/// What the `export_name` fuzz target and its corpus replay check: parsing `name`
/// never panics, and what it accepts is exactly `<mac>/<vdisk>/<token>` again.
///
/// # Panics
///
/// When the parser accepts a name its parts do not rebuild.
#[doc(hidden)]
pub fn check_export_name(name: &str) {
    if let Ok((mac, vdisk, token)) = parse_export_name(name) {
        let again = format!("{mac}/{vdisk}/{token}");
        let (mac2, vdisk2, token2) = parse_export_name(&again).expect("a rebuilt name parses");
        assert!(mac2 == mac && vdisk2 == vdisk && token2 == token);
        assert!(!vdisk.contains('/'));
    }
}

impl SessionExports {
    /// A provider over `sessions`.
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }

    /// The session for an export name, shared with the boot's other connections.
    pub fn session(&self, name: &str) -> Result<Arc<Session>, Refusal> {
        let (mac, vdisk, token) = parse_export_name(name).map_err(|why| {
            tracing::warn!(export = name, "NBD export refused: {why}");
            Refusal::Policy(why)
        })?;
        let session = self.sessions.open(mac, vdisk, &token).map_err(|e| {
            tracing::warn!(mac = %mac, vdisk, error = %e, "NBD export refused");
            match e.kind() {
                ErrorKind::NotFound
                | ErrorKind::Refused
                | ErrorKind::Conflict
                | ErrorKind::Invalid => Refusal::Policy(e.to_string()),
                _ => Refusal::Platform(e.to_string()),
            }
        })?;
        // Ours plus the connections' references.
        if Arc::strong_count(&session) > CONNECTIONS_PER_SESSION {
            let why = format!(
                "{} ({mac}) already has {CONNECTIONS_PER_SESSION} connections to `{vdisk}`",
                session.info().device
            );
            tracing::warn!(mac = %mac, vdisk, "NBD export refused: {why}");
            return Err(Refusal::Policy(why));
        }
        Ok(session)
    }
}

impl ExportProvider for SessionExports {
    fn open(&self, name: &str, _peer: SocketAddr) -> Result<Arc<dyn Export>, Refusal> {
        let session = self.session(name)?;
        let info = session.info();
        let description = format!(
            "{} on {} ({}), boot {}, version {}, {:?}",
            info.vdisk, info.device, info.mac, info.boot, info.version, info.mode
        );
        let end = session.end_signal();
        Ok(Arc::new(
            DiskExport::new(session, true)
                .with_description(description)
                .with_end_signal(end),
        ))
    }

    /// Devices are not enumerated to anonymous clients: the list is empty.
    fn list(&self, _peer: SocketAddr) -> Vec<ExportListing> {
        Vec::new()
    }
}
