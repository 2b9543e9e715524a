//! The adapter from a `vhd::Disk` (raw file, VHD chain, or a snapshot overlay) to an
//! `nbd_proto::Export`, and the provider `main` serves.

use std::sync::Arc;

use nbd_proto::{Capabilities, Errno, Export, Extent, SingleExport, ZeroFlags};
use vhd::{Disk, ErrorKind, ExtentState, Overlay, OverlayLimits};

use crate::{Args, Provider};

/// Builds the export provider the arguments ask for: one shared disk, or with
/// `--snapshot` a fresh overlay over the read-only image for every connection.
pub fn provider(args: &Args, name: String) -> Result<Provider, String> {
    let read_only = args.read_only || args.snapshot;
    let disk = vhd::open_disk(&args.file, read_only)
        .map_err(|e| format!("cannot open {}: {e}", args.file.display()))?;
    if !args.snapshot {
        let export = DiskExport {
            disk,
            shared: true,
            fast_zero: false,
        };
        return Ok(Arc::new(SingleExport::new(name, Arc::new(export))));
    }
    let limits = OverlayLimits {
        ram_bytes: args.snapshot_ram,
        spill_dir: Some(args.snapshot_dir.clone().unwrap_or_else(std::env::temp_dir)),
        quota_bytes: Some(args.snapshot_quota),
    };
    Ok(Arc::new(SingleExport::per_connection(name, move |peer| {
        let overlay = Overlay::new(disk.clone(), limits.clone())
            .map_err(|e| nbd_proto::Refusal::Platform(format!("cannot create an overlay: {e}")))?;
        tracing::debug!(%peer, "new snapshot overlay");
        let export = DiskExport {
            disk: Arc::new(overlay),
            shared: false,
            fast_zero: true,
        };
        Ok(Arc::new(export) as Arc<dyn Export>)
    })))
}

/// A `vhd::Disk` seen as an NBD export.
struct DiskExport {
    disk: Arc<dyn Disk>,
    /// One disk for every connection: flushed writes are visible to all (MULTI_CONN).
    shared: bool,
    /// Zeroing only marks chunks (an overlay): honest FAST_ZERO.
    fast_zero: bool,
}

/// Maps the vhd crate's error kinds to NBD error values (SPECS §1.7).
fn errno(e: vhd::Error) -> Errno {
    match e.kind() {
        ErrorKind::NoSpace => Errno::ENOSPC,
        ErrorKind::ReadOnly => Errno::EPERM,
        ErrorKind::OutOfRange => Errno::EINVAL,
        _ => {
            tracing::warn!(error = %e, "disk I/O failed");
            Errno::EIO
        }
    }
}

impl Export for DiskExport {
    fn size(&self) -> u64 {
        self.disk.size()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::FLUSH | Capabilities::CACHE;
        if self.shared {
            caps |= Capabilities::MULTI_CONN;
        }
        if self.disk.is_read_only() {
            caps | Capabilities::READ_ONLY
        } else {
            caps | Capabilities::FUA
                | Capabilities::TRIM
                | Capabilities::WRITE_ZEROES
                | Capabilities::FAST_ZERO
        }
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        self.disk.read_at(buf, offset).map_err(errno)
    }

    fn write(&self, data: &[u8], offset: u64, fua: bool) -> Result<(), Errno> {
        self.disk.write_at(data, offset).map_err(errno)?;
        if fua { self.flush() } else { Ok(()) }
    }

    fn flush(&self) -> Result<(), Errno> {
        self.disk.flush().map_err(errno)
    }

    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), Errno> {
        self.disk.trim(offset, len).map_err(errno)?;
        if fua { self.flush() } else { Ok(()) }
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<(), Errno> {
        if flags.fast && !self.fast_zero {
            // Zeroing a file here means writing zeroes: not faster, so say so at once.
            return Err(Errno::ENOTSUP);
        }
        self.disk.write_zeroes(offset, len).map_err(errno)?;
        if flags.fua { self.flush() } else { Ok(()) }
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, Errno> {
        let mut out = Vec::new();
        let mut pos = offset;
        for e in self.disk.allocation(offset, len).map_err(errno)? {
            if e.offset > pos {
                out.push(Extent::data(e.offset - pos));
            }
            let start = e.offset.max(pos);
            let end = e.offset.saturating_add(e.len);
            if end <= start {
                continue;
            }
            out.push(match e.state {
                ExtentState::Data => Extent::data(end - start),
                ExtentState::Zero => Extent::hole(end - start),
            });
            pos = end;
        }
        Ok(out)
    }
    fn locate(&self, offset: u64, len: u64) -> Option<Vec<nbd_proto::Located>> {
        provision_core::adapters::nbd::locate(&*self.disk, offset, len)
    }
}
