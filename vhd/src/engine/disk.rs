//! The [`Disk`] trait (a virtual disk as a block device sees it), allocation extents,
//! and [`RawDisk`], a raw image file behind a [`Storage`].

use std::fs::File;
use std::sync::Arc;

use crate::engine::storage::Storage;
use crate::error::{Error, Result};

/// Whether a range of a disk holds data or reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtentState {
    /// Allocated somewhere in the chain (may still contain zeros).
    Data,
    /// Not allocated: reads as zeros.
    Zero,
}

/// A range of a disk with one [`ExtentState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Data or zero.
    pub state: ExtentState,
}

/// Where a run of a disk's bytes is stored (see [`Disk::locate`]).
#[derive(Debug, Clone)]
pub enum Located {
    /// `len` bytes of `file` from `offset`, stored as they read.
    File {
        /// The image file holding them.
        file: Arc<File>,
        /// Where in the file.
        offset: u64,
        /// How many.
        len: u64,
    },
    /// This many bytes that read as zeros.
    Zeros(u64),
    /// Bytes held in memory (a write cache), copied out.
    Bytes(Vec<u8>),
}

impl Located {
    /// How many bytes of the disk this run covers.
    pub fn len(&self) -> u64 {
        match self {
            Located::File { len, .. } | Located::Zeros(len) => *len,
            Located::Bytes(b) => b.len() as u64,
        }
    }

    /// True for an empty run.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends a run to `out`, merging it with the last one when both are zeros or both
/// are neighbouring ranges of one file.
pub fn push_located(out: &mut Vec<Located>, run: Located) {
    if run.is_empty() {
        return;
    }
    match (out.last_mut(), &run) {
        (Some(Located::Zeros(n)), Located::Zeros(m)) => *n += m,
        (
            Some(Located::File { file, offset, len }),
            Located::File {
                file: f,
                offset: o,
                len: l,
            },
        ) if Arc::ptr_eq(file, f) && *offset + *len == *o => *len += l,
        _ => out.push(run),
    }
}

/// A virtual disk as a block device sees it (the whole chain, an overlay, or a raw file).
///
/// Every method takes `&self`: one disk is read by many threads at once.
pub trait Disk: Send + Sync {
    /// Virtual size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; the range must lie within [`Disk::size`].
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Writes `buf` at `offset`; [`crate::ErrorKind::ReadOnly`] on a read-only disk.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;
    /// Makes every earlier write durable.
    fn flush(&self) -> Result<()>;
    /// True when writes are refused.
    fn is_read_only(&self) -> bool;
    /// Data/zero extents covering `[offset, offset + len)`, in order, merged.
    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>>;
    /// Where the bytes of `[offset, offset + len)` are stored, as runs in order. A
    /// server sends file runs straight from the page cache (sendfile) instead of
    /// copying them through a buffer. `None` (the default) when some of the bytes are
    /// in no file (memory storage): read them with [`Disk::read_at`].
    fn locate(&self, offset: u64, len: u64) -> Result<Option<Vec<Located>>> {
        check_range(self.size(), offset, len)?;
        Ok(None)
    }
    /// Writes zeros over `[offset, offset + len)`.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.size(), offset, len)?;
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        write_zeros_through(self, offset, len)
    }
    /// Declares `[offset, offset + len)` unused; the default does nothing (trim is
    /// advisory).
    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.size(), offset, len)
    }
}

/// Fails with [`Error::OutOfRange`] unless `[offset, offset + len)` lies within `size`.
pub fn check_range(size: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange { offset, len, size }),
    }
}

/// Writes zeros over `[offset, offset + len)` with [`Disk::write_at`], a MiB at a time.
pub(crate) fn write_zeros_through<D: Disk + ?Sized>(disk: &D, offset: u64, len: u64) -> Result<()> {
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64);
        disk.write_at(&zeros[..n as usize], offset + done)?;
        done += n;
    }
    Ok(())
}

/// Appends an extent to `out`, merging it with the last one when they touch and agree.
pub fn push_extent(out: &mut Vec<Extent>, offset: u64, len: u64, state: ExtentState) {
    if len == 0 {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.state == state
        && last.offset + last.len == offset
    {
        last.len += len;
        return;
    }
    out.push(Extent { offset, len, state });
}

/// Data and hole extents of `[offset, offset + len)` of `file`, from `SEEK_DATA` and
/// `SEEK_HOLE`; `None` when the file system cannot tell.
fn holes(file: &std::fs::File, offset: u64, len: u64) -> Option<Vec<Extent>> {
    use rustix::fs::{SeekFrom, seek};
    let end = offset + len;
    let mut out = Vec::new();
    let mut pos = offset;
    // Each round moves past one data run: at most one round per run in the range.
    while pos < end {
        let data = match seek(file, SeekFrom::Data(pos)) {
            Ok(at) => at.min(end),
            // No data after `pos`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => end,
            Err(_) => return None,
        };
        push_extent(&mut out, pos, data - pos, ExtentState::Zero);
        if data >= end {
            break;
        }
        let hole = seek(file, SeekFrom::Hole(data)).ok()?.min(end);
        if hole <= data {
            return None;
        }
        push_extent(&mut out, data, hole - data, ExtentState::Data);
        pos = hole;
    }
    Some(out)
}

/// A raw image: the file's bytes are the disk's bytes.
pub struct RawDisk {
    storage: Arc<dyn Storage>,
    size: u64,
    read_only: bool,
}

impl RawDisk {
    /// A raw disk over `storage`, sized by its current length.
    pub fn new(storage: Arc<dyn Storage>) -> Result<Self> {
        let size = storage
            .len()
            .map_err(|e| Error::io("raw disk: length", e))?;
        let read_only = storage.is_read_only();
        Ok(RawDisk {
            storage,
            size,
            read_only,
        })
    }
}

impl Disk for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.size, offset, buf.len() as u64)?;
        self.storage
            .read_at(buf, offset)
            .map_err(|e| Error::io(format!("raw disk: read at {offset}"), e))
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.size, offset, buf.len() as u64)?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.storage
            .write_at(buf, offset)
            .map_err(|e| Error::io(format!("raw disk: write at {offset}"), e))
    }
    fn flush(&self) -> Result<()> {
        self.storage
            .flush()
            .map_err(|e| Error::io("raw disk: flush", e))
    }
    fn is_read_only(&self) -> bool {
        self.read_only
    }
    /// The file's holes read as zeros: where the file system can tell them
    /// (`SEEK_DATA`/`SEEK_HOLE`), they are reported as [`ExtentState::Zero`], so that
    /// copies and conversions of sparse files skip them.
    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        check_range(self.size, offset, len)?;
        if let Some(extents) = self.storage.file().and_then(|f| holes(f, offset, len)) {
            return Ok(extents);
        }
        let mut out = Vec::new();
        push_extent(&mut out, offset, len, ExtentState::Data);
        Ok(out)
    }
    fn locate(&self, offset: u64, len: u64) -> Result<Option<Vec<Located>>> {
        check_range(self.size, offset, len)?;
        Ok(self.storage.file().map(|file| {
            vec![Located::File {
                file: file.clone(),
                offset,
                len,
            }]
        }))
    }
}
