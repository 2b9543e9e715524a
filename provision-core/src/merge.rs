//! Merging a chain into a new base: version N's whole chain is flattened into one
//! dynamic image that keeps N's unique id, then renamed over N's file.
//!
//! Sessions that have the old file open keep reading it (the old inode lives until
//! they close it); newer versions still find their parent, by the same path and the
//! same unique id. Versions older than N stay as they are, for rollback.

use std::sync::Arc;

use vhd::{CreateOptions, Disk, ExtentState, OpenOptions};

use crate::error::{Error, ErrorKind, Result};
use crate::store::Store;

/// Bytes copied per read/write while merging.
const CHUNK: u64 = 2 << 20;

/// Flattens version `number` of `vdisk` into a new base in place. `progress` gets
/// (done, total) bytes. Returns the bytes of data copied.
pub fn merge_version(
    store: &Store,
    vdisk: &str,
    number: u32,
    progress: vhd::Progress<'_>,
) -> Result<u64> {
    let dir = store
        .dir()
        .ok_or_else(|| Error::new(ErrorKind::Invalid, "merging needs a store in a folder"))?;
    let version = store
        .versions(vdisk)?
        .into_iter()
        .find(|v| v.number == number)
        .ok_or_else(|| Error::not_found("version", format!("{vdisk} {number}")))?;
    let path = dir.join(&version.file);
    // Held until the merged file has replaced this one: no session writes the version
    // meanwhile, nor was writing it when the merge began.
    let _writers_kept_out = crate::file_lock::FileLock::exclusive(&path, "a session")
        .map_err(|e| crate::store::in_use(e, vdisk, number, "merge"))?;
    let chain = Arc::new(OpenOptions::new(true).open(&path)?);
    if chain.parent().is_none() {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("version {number} of `{vdisk}` is already a base: nothing to merge"),
        ));
    }
    let block_size = chain
        .header()
        .map_or(vhd::DEFAULT_BLOCK_SIZE, |h| h.block_size);
    let options = CreateOptions {
        unique_id: Some(chain.footer().unique_id),
        ..CreateOptions::dynamic(chain.size()).block_size(block_size)
    };
    let mut copied = 0;
    let partial = crate::layout::merge_output(&version.file);
    crate::images::write_new(dir, &partial, |tmp| {
        let out = options.create(tmp)?;
        copied = copy_allocated(chain.as_ref(), &out, progress)?;
        out.flush()?;
        Ok(())
    })?;
    let merged = dir.join(&partial);
    std::fs::rename(&merged, &path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    tracing::info!(vdisk, number, copied, "chain merged into a new base");
    store.record_merge(vdisk, number, copied)?;
    Ok(copied)
}

/// Copies the data extents of `src` into `dst` at the same offsets.
fn copy_allocated(src: &dyn Disk, dst: &dyn Disk, progress: vhd::Progress<'_>) -> Result<u64> {
    let size = src.size();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut copied = 0;
    progress(0, size);
    for extent in src.allocation(0, size)? {
        let end = extent.offset + extent.len;
        let mut pos = extent.offset;
        while extent.state == ExtentState::Data && pos < end {
            let n = (CHUNK - pos % CHUNK).min(end - pos);
            let chunk = &mut buf[..n as usize];
            src.read_at(chunk, pos)?;
            if chunk.iter().any(|&b| b != 0) {
                dst.write_at(chunk, pos)?;
                copied += n;
            }
            pos += n;
            progress(pos, size);
        }
        progress(end, size);
    }
    Ok(copied)
}
