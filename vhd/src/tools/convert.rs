//! Whole-image operations with a progress callback: convert any disk (raw, a VHD, a
//! whole chain) to raw, fixed or dynamic; merge a child into its parent; save an
//! overlay as a differencing child. All-zero ranges are skipped, so they stay holes in
//! raw and fixed outputs and unallocated blocks in dynamic ones.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::engine::chain::OpenOptions;
use crate::engine::disk::{Disk, ExtentState};
use crate::engine::image::Image;
use crate::engine::overlay::Overlay;
use crate::engine::storage::{FileStorage, Storage};
use crate::error::{Error, Result};
use crate::format::header::DEFAULT_BLOCK_SIZE;
use crate::tools::create::{CreateOptions, create_differencing};

/// Progress callback: (bytes done, bytes total).
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

/// What to convert to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A raw file (sparse where the source reads zeros).
    Raw,
    /// A fixed VHD.
    Fixed,
    /// A dynamic VHD with the given block size.
    Dynamic {
        /// Block size in bytes.
        block_size: u32,
    },
}

impl Target {
    /// A dynamic target with 2 MiB blocks.
    pub fn dynamic() -> Self {
        Target::Dynamic {
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

fn is_zero(buf: &[u8]) -> bool {
    let (words, tail) = buf.as_chunks::<16>();
    words.iter().all(|w| u128::from_ne_bytes(*w) == 0) && tail.iter().all(|&b| b == 0)
}

/// Copies every non-zero run of `src` into `dst` (same offsets), in chunks aligned to
/// `chunk` (whole blocks for dynamic targets), on a few threads: both disks are read and
/// written positionally, so chunks are independent.
fn copy_data(src: &dyn Disk, dst: &dyn Disk, chunk: u64, progress: Progress<'_>) -> Result<u64> {
    let size = src.size();
    let chunks = size.div_ceil(chunk);
    let next = AtomicU64::new(0);
    let copied = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let progress = Mutex::new(progress);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 2);
    (progress.lock().unwrap_or_else(|e| e.into_inner()))(0, size);
    let work = || -> Result<()> {
        let mut buf = vec![0u8; chunk as usize];
        loop {
            let idx = next.fetch_add(1, Ordering::Relaxed);
            if idx >= chunks {
                return Ok(());
            }
            let start = idx * chunk;
            let len = chunk.min(size - start);
            for e in src.allocation(start, len)? {
                if e.state != ExtentState::Data {
                    continue;
                }
                let b = &mut buf[..e.len as usize];
                src.read_at(b, e.offset)?;
                if !is_zero(b) {
                    dst.write_at(b, e.offset)?;
                    copied.fetch_add(e.len, Ordering::Relaxed);
                }
            }
            let d = done.fetch_add(len, Ordering::Relaxed) + len;
            (progress.lock().unwrap_or_else(|e| e.into_inner()))(d, size);
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Unsupported("a copy thread panicked".into())))
            })
            .collect::<Result<Vec<()>>>()
    })?;
    Ok(copied.load(Ordering::Relaxed))
}

/// Converts `src` into a new file at `out`. Returns the bytes of data written.
pub fn convert(src: &dyn Disk, out: &Path, target: Target, progress: Progress<'_>) -> Result<u64> {
    let size = src.size();
    let vhd_size = size.div_ceil(512) * 512;
    let copied = match target {
        Target::Raw => {
            let storage = FileStorage::create(out)
                .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
            storage
                .set_len(size)
                .map_err(|e| Error::io("sizing the raw file", e))?;
            let dst = crate::engine::disk::RawDisk::new(Arc::new(storage))?;
            let n = copy_data(src, &dst, 2 << 20, progress)?;
            dst.flush()?;
            n
        }
        Target::Fixed => {
            let dst = CreateOptions::fixed(vhd_size).create(out)?;
            let n = copy_data(&Clip(src), &dst, 2 << 20, progress)?;
            dst.flush()?;
            n
        }
        Target::Dynamic { block_size } => {
            let dst = CreateOptions::dynamic(vhd_size)
                .block_size(block_size)
                .create(out)?;
            let n = copy_data(
                &Clip(src),
                &dst,
                u64::from(block_size).max(64 << 10),
                progress,
            )?;
            dst.flush()?;
            n
        }
    };
    Ok(copied)
}

/// Converts the raw file or VHD at `input` (a whole chain included) into a new file at
/// `out`, as [`convert`] does. Before anything is written, `out` is refused with
/// [`Error::WouldOverwrite`] when it is `input` or an image of its chain, by any name
/// (a symbolic or hard link): creating it would truncate the data being converted.
pub fn convert_file(
    input: &Path,
    out: &Path,
    target: Target,
    progress: Progress<'_>,
) -> Result<u64> {
    let (src, files) = crate::engine::chain::open_disk_with_files(input, true)?;
    crate::tools::overwrite::refuse_overwrite(out, files.iter().map(|f| f.as_path()))?;
    convert(src.as_ref(), out, target, progress)
}

/// A source whose size is not a whole number of sectors, seen padded with zeros.
struct Clip<'a>(&'a dyn Disk);

impl Disk for Clip<'_> {
    fn size(&self) -> u64 {
        self.0.size().div_ceil(512) * 512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let real = self.0.size();
        let avail = real.saturating_sub(offset).min(buf.len() as u64) as usize;
        self.0.read_at(&mut buf[..avail], offset)?;
        buf[avail..].fill(0);
        Ok(())
    }
    fn write_at(&self, _: &[u8], _: u64) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn is_read_only(&self) -> bool {
        true
    }
    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<crate::engine::disk::Extent>> {
        let real = self.0.size();
        let mut out = if offset < real {
            self.0.allocation(offset, len.min(real - offset))?
        } else {
            Vec::new()
        };
        let covered = out.last().map_or(offset, |e| e.offset + e.len);
        crate::engine::disk::push_extent(
            &mut out,
            covered,
            offset + len - covered,
            ExtentState::Zero,
        );
        Ok(out)
    }
}

/// Merges the differencing image at `child` into its parent: every sector the child
/// holds is written into the parent, which then reads as the child did. The child is
/// left in place (it still reads the same, now redundantly). Returns bytes merged.
pub fn merge(child: &Path, progress: Progress<'_>) -> Result<u64> {
    let c = OpenOptions::new(true).open(child)?;
    let Some(parent) = c.parent() else {
        return Err(Error::InvalidInput(format!(
            "{} is not a differencing image",
            child.display()
        )));
    };
    let parent_path = parent
        .path()
        .ok_or_else(|| Error::InvalidInput("the parent has no path".into()))?
        .to_path_buf();
    let writable = OpenOptions::new(false).open(&parent_path)?;
    if writable.size() < c.size() {
        return Err(Error::Unsupported(format!(
            "merging a child of {} bytes into a smaller parent of {} bytes",
            c.size(),
            writable.size()
        )));
    }
    let own: Vec<(u64, u64)> = c
        .layers(0, c.size())?
        .into_iter()
        .filter(|r| r.2 == Some(0))
        .map(|r| (r.0, r.1))
        .collect();
    let total = copy_ranges(&c, &writable, &own, progress)?;
    writable.flush()?;
    Ok(total)
}

/// Copies `ranges` (offset, length) of `src` into `dst` at the same offsets.
fn copy_ranges(
    src: &dyn Disk,
    dst: &dyn Disk,
    ranges: &[(u64, u64)],
    progress: Progress<'_>,
) -> Result<u64> {
    let total: u64 = ranges.iter().map(|r| r.1).sum();
    let mut done = 0;
    let mut buf = vec![0u8; 2 << 20];
    progress(0, total);
    for &(off, len) in ranges {
        let mut pos = off;
        while pos < off + len {
            let n = (off + len - pos).min(buf.len() as u64);
            let b = &mut buf[..n as usize];
            src.read_at(b, pos)?;
            dst.write_at(b, pos)?;
            pos += n;
            done += n;
            progress(done, total);
        }
    }
    Ok(total)
}

/// Saves what an overlay holds as a new differencing image at `child` over the image
/// file at `parent` (which must be the overlay's base): "capture this session as a new
/// version".
pub fn save_overlay(overlay: &Overlay, parent: &Path, child: &Path) -> Result<Image> {
    let img = create_differencing(child, parent)?;
    if img.size() != overlay.size() {
        return Err(Error::InvalidInput(format!(
            "overlay of {} bytes over a parent of {} bytes",
            overlay.size(),
            img.size()
        )));
    }
    copy_ranges(overlay, &img, &overlay.written_ranges(), &mut |_, _| {})?;
    img.flush()?;
    Ok(img)
}
