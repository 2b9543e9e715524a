//! The export provider `main` serves: a `vhd::Disk` (raw file, VHD chain, or a
//! snapshot overlay per connection) through provision-core's `DiskExport`.

use std::sync::Arc;

use nbd_proto::{Export, SingleExport};
use provision_core::adapters::nbd::DiskExport;
use vhd::{Overlay, OverlayLimits};

use crate::{Args, Provider};

/// Builds the export provider the arguments ask for: one shared disk, or with
/// `--snapshot` a fresh overlay over the read-only image for every connection.
pub fn provider(args: &Args, name: String) -> Result<Provider, String> {
    let read_only = args.read_only || args.snapshot;
    let disk = vhd::open_disk(&args.file, read_only)
        .map_err(|e| format!("cannot open {}: {e}", args.file.display()))?;
    if !args.snapshot {
        let export = DiskExport::new(disk, true);
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
        let export = DiskExport::new(Arc::new(overlay), false).with_fast_zero(true);
        Ok(Arc::new(export) as Arc<dyn Export>)
    })))
}
