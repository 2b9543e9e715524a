//! One VHD image (fixed, dynamic or differencing) over a [`Storage`], with its parent
//! attached: sector resolution through BAT and bitmaps, reads, and the write path with
//! on-demand block allocation.
//!
//! Read path: BAT under an `RwLock` (read side only), a per-block bitmap summary in
//! atomics, bitmaps of partly written blocks in a small read-mostly cache, and a
//! positional read of the storage. No lock is held across I/O, so many threads read
//! one image at once. Writes to sparse images are serialised by one mutex.
//!
//! Block allocation order (crash-safe, SPECS §2.3 and DESIGN): data, then the sector
//! bitmap, then the BAT entry, then (when the file grew) the footer at the new end of
//! file. A crash before the BAT write leaves unreferenced bytes (explained by
//! [`crate::check`]) and, at the end, a missing trailing footer, for which the copy at
//! offset 0 stands in; the space is reused by a later allocation.
//!
//! TRIM of whole blocks unlinks them (BAT entry first) and gives their space back: the
//! file system gets it at once (a punched hole), new blocks get it after the next flush
//! (`space`); see `trim`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::engine::disk::{
    Disk, Extent, ExtentState, Located, check_range, push_extent, write_zeros_through,
};
use crate::engine::storage::Storage;
use crate::error::{Error, Result};
use crate::format::bat::UNUSED;
use crate::format::bitmap::{bit, run_len};
use crate::format::footer::{DiskType, FOOTER_LEN, Footer};
use crate::format::header::DynamicHeader;
use crate::format::layout::{Layout, read_layout};

pub use crate::format::layout::{ChecksumPolicy, FooterSource, SizePolicy};

mod flat;
mod read;
mod space;
mod spans;
mod trim;
mod write;

use space::Space;

/// Bitmap summary of a block, cached in one byte.
const STATE_UNKNOWN: u8 = 0;
const STATE_ALL_SET: u8 = 1;
const STATE_ALL_CLEAR: u8 = 2;
const STATE_PARTIAL: u8 = 3;

/// Where a run of bytes of a block is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// This file, at the given offset.
    Here(u64),
    /// The parent (differencing) or zeros (dynamic).
    Below,
}

/// A hasher for block numbers: they are small distinct integers, so a multiply suffices
/// (SipHash showed up in read profiles of deep chains).
#[derive(Default)]
struct BlockHasher(u64);

impl Hasher for BlockHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Sparse-image state: header, BAT and caches.
struct Sparse {
    header: DynamicHeader,
    block_size: u64,
    bitmap_len: u64,
    sectors_per_block: usize,
    /// BAT entries: atomics, so the read path takes no lock for them.
    bat: Vec<AtomicU32>,
    state: Vec<AtomicU8>,
    partial: RwLock<HashMap<u32, Box<[u8]>, BuildHasherDefault<BlockHasher>>>,
    /// Where the data area starts (after header, BAT and locator data).
    data_start: u64,
    /// Blocks allocated (BAT entries in use).
    allocated: AtomicU64,
    /// Where new blocks go; the write lock.
    space: Mutex<Space>,
}

/// One VHD image and (for differencing images) its parent chain.
pub struct Image {
    storage: Arc<dyn Storage>,
    path: Option<PathBuf>,
    layout_footer: Footer,
    footer_source: FooterSource,
    size: u64,
    read_only: bool,
    sparse: Option<Sparse>,
    parent: Option<Arc<Image>>,
    warnings: Vec<String>,
    /// The flattened view of a read-only chain (see `flat`).
    flat: Option<flat::Flat>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("type", &self.layout_footer.disk_type)
            .field("size", &self.size)
            .field("parent", &self.parent)
            .finish()
    }
}

impl Image {
    /// Opens an image over `storage`. A differencing image needs its `parent` here
    /// (see [`crate::OpenOptions`] to resolve parents from files).
    pub fn from_storage(
        storage: Arc<dyn Storage>,
        read_only: bool,
        checksums: ChecksumPolicy,
        size_policy: SizePolicy,
        parent: Option<Arc<Image>>,
    ) -> Result<Image> {
        let layout = read_layout(storage.as_ref(), checksums, size_policy)?;
        Image::from_layout(storage, layout, read_only, parent, None)
    }

    /// Opens an image whose layout was already read.
    pub(crate) fn from_layout(
        storage: Arc<dyn Storage>,
        layout: Layout,
        read_only: bool,
        parent: Option<Arc<Image>>,
        path: Option<PathBuf>,
    ) -> Result<Image> {
        let read_only = read_only || storage.is_read_only();
        let is_diff = layout.footer.disk_type == DiskType::Differencing;
        match (&parent, is_diff) {
            (None, true) => {
                return Err(Error::ParentNotFound {
                    child: path.clone().unwrap_or_default(),
                    name: layout
                        .sparse
                        .as_ref()
                        .map(|(h, _)| h.parent_unicode_name.clone())
                        .unwrap_or_default(),
                    tried: Vec::new(),
                });
            }
            (Some(_), false) => {
                return Err(Error::InvalidInput(
                    "a parent was given for an image that is not differencing".into(),
                ));
            }
            _ => {}
        }
        let sparse = layout.sparse.map(|(header, bat)| {
            let block_size = u64::from(header.block_size);
            let bitmap_len = header.bitmap_len();
            let total = block_size + bitmap_len;
            let meta_end = (layout.footer.data_offset + crate::format::header::HEADER_LEN as u64)
                .max(header.table_offset + header.bat_len());
            let locator_end = header
                .locators
                .iter()
                .filter(|l| !l.is_empty())
                .map(|l| l.data_offset.saturating_add(l.reserved_bytes()))
                .filter(|&e| e <= layout.footer_offset)
                .max()
                .unwrap_or(0);
            let data_start = meta_end.max(locator_end).div_ceil(512) * 512;
            let blocks: Vec<u64> = bat
                .iter()
                .filter(|&&e| e != UNUSED)
                .map(|&e| u64::from(e) * 512)
                .collect();
            let allocated = AtomicU64::new(blocks.len() as u64);
            // Only a writable image allocates: it alone needs the free slots.
            let space = if read_only {
                let blocks_end = blocks.iter().map(|b| b + total).max().unwrap_or(0);
                Space::at_end(data_start.max(blocks_end))
            } else {
                Space::rebuild(data_start, blocks, total)
            };
            let state = (0..bat.len())
                .map(|_| AtomicU8::new(STATE_UNKNOWN))
                .collect();
            Sparse {
                sectors_per_block: (block_size / 512) as usize,
                block_size,
                bitmap_len,
                header,
                bat: bat.into_iter().map(AtomicU32::new).collect(),
                state,
                partial: RwLock::new(HashMap::default()),
                data_start,
                allocated,
                space: Mutex::new(space),
            }
        });
        let mut image = Image {
            storage,
            path,
            layout_footer: layout.footer,
            footer_source: layout.footer_source,
            size: layout.size,
            read_only,
            sparse,
            parent,
            warnings: layout.warnings,
            flat: None,
        };
        image.flat = flat::Flat::for_chain(&image);
        Ok(image)
    }

    /// Opens an image held in memory (writable, lenient, current size, no parent).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Image> {
        let storage = Arc::new(crate::engine::storage::MemStorage::new(bytes));
        Image::from_storage(
            storage,
            false,
            ChecksumPolicy::Lenient,
            SizePolicy::CurrentSize,
            None,
        )
    }

    /// Records the file this image lives in (for messages and chain listings).
    pub fn with_path(mut self, path: &Path) -> Image {
        self.path = Some(path.to_path_buf());
        self
    }

    /// The footer in effect.
    pub fn footer(&self) -> &Footer {
        &self.layout_footer
    }

    /// Where the footer in effect was found.
    pub fn footer_source(&self) -> FooterSource {
        self.footer_source
    }

    /// The dynamic header (dynamic and differencing images).
    pub fn header(&self) -> Option<&DynamicHeader> {
        self.sparse.as_ref().map(|s| &s.header)
    }

    /// The disk type.
    pub fn disk_type(&self) -> DiskType {
        self.layout_footer.disk_type
    }

    /// The file this image was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The parent of a differencing image.
    pub fn parent(&self) -> Option<&Arc<Image>> {
        self.parent.as_ref()
    }

    /// This image and its ancestors, child first.
    pub fn chain(&self) -> Vec<&Image> {
        let mut out = vec![self];
        let mut cur = self;
        while let Some(p) = cur.parent.as_deref() {
            out.push(p);
            cur = p;
        }
        out
    }

    /// What was odd but tolerated when opening (bad checksums, footer fallback, ...).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The storage under this image.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The image file's length as its writes leave it: known in memory for a dynamic or
    /// differencing image (where new blocks go, plus the footer), read from the storage
    /// for a fixed one.
    pub fn file_len(&self) -> Result<u64> {
        match &self.sparse {
            Some(s) => Ok(lock(&s.space).end + FOOTER_LEN as u64),
            None => self
                .storage
                .len()
                .map_err(|e| Error::io("reading the image length", e)),
        }
    }

    /// The bytes this image's file needs for what it holds, from memory: the metadata
    /// (footer copy, header, locator data, BAT), the allocated blocks and the trailing
    /// footer of a dynamic or differencing image; data and footer of a fixed one. Less
    /// than [`Image::file_len`] by the slots TRIM gave back (the file keeps its length;
    /// their disk space was returned) and any gaps other writers left.
    pub fn allocated_len(&self) -> u64 {
        match &self.sparse {
            Some(s) => {
                let slot = s.bitmap_len + s.block_size;
                s.data_start + s.allocated.load(Ordering::Acquire) * slot + FOOTER_LEN as u64
            }
            None => self.layout_footer.current_size + FOOTER_LEN as u64,
        }
    }

    /// A copy of the BAT (dynamic and differencing images).
    pub fn bat(&self) -> Option<Vec<u32>> {
        self.sparse
            .as_ref()
            .map(|s| s.bat.iter().map(|e| e.load(Ordering::Acquire)).collect())
    }

    /// The sector bitmap of `block` as stored, or `None` if the block is not allocated.
    pub fn block_bitmap(&self, block: u32) -> Result<Option<Vec<u8>>> {
        let Some(s) = &self.sparse else {
            return Ok(None);
        };
        let entry = s
            .bat
            .get(block as usize)
            .map_or(UNUSED, |e| e.load(Ordering::Acquire));
        if entry == UNUSED {
            return Ok(None);
        }
        let mut bm = vec![0; s.bitmap_len as usize];
        self.read_storage(&mut bm, u64::from(entry) * 512, "sector bitmap")?;
        Ok(Some(bm))
    }

    fn read_storage(&self, buf: &mut [u8], offset: u64, what: &str) -> Result<()> {
        self.storage.read_at(buf, offset).map_err(|e| {
            Error::io(
                format!("{}: reading {what} at offset {offset}", self.name()),
                e,
            )
        })
    }

    fn write_storage(&self, buf: &[u8], offset: u64, what: &str) -> Result<()> {
        self.storage.write_at(buf, offset).map_err(|e| {
            Error::io(
                format!("{}: writing {what} at offset {offset}", self.name()),
                e,
            )
        })
    }

    fn name(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "image".to_owned(), |p| p.display().to_string())
    }

    /// The bitmap summary of an allocated block, loading it on first use.
    fn block_state(&self, s: &Sparse, block: usize, entry: u32) -> Result<u8> {
        let st = s.state[block].load(Ordering::Acquire);
        if st != STATE_UNKNOWN {
            return Ok(st);
        }
        let mut bm = vec![0; s.bitmap_len as usize];
        self.read_storage(&mut bm, u64::from(entry) * 512, "sector bitmap")?;
        Ok(self.remember_bitmap(s, block, bm, true))
    }

    /// Caches a block's bitmap. Readers pass `only_if_unknown` so that a bitmap read
    /// before a concurrent writer's update never replaces the writer's newer one (both
    /// sides decide under the cache's lock).
    fn remember_bitmap(&self, s: &Sparse, block: usize, bm: Vec<u8>, only_if_unknown: bool) -> u8 {
        let n = s.sectors_per_block;
        let st = match run_len(&bm, 0, n) {
            len if len == n && bit(&bm, 0) => STATE_ALL_SET,
            len if len == n => STATE_ALL_CLEAR,
            _ => STATE_PARTIAL,
        };
        let mut partial = write_lock(&s.partial);
        if only_if_unknown {
            let now = s.state[block].load(Ordering::Acquire);
            if now != STATE_UNKNOWN {
                return now;
            }
        }
        if st == STATE_PARTIAL {
            partial.insert(block as u32, bm.into());
        } else {
            partial.remove(&(block as u32));
        }
        s.state[block].store(st, Ordering::Release);
        st
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Disk for Image {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.size, offset, buf.len() as u64)?;
        self.read_unchecked(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.size, offset, buf.len() as u64)?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        match &self.sparse {
            None => self.write_storage(buf, offset, "fixed data"),
            Some(s) => self.write_sparse(s, buf, offset),
        }
    }

    fn flush(&self) -> Result<()> {
        // Slots trimmed before the flush begins become reusable once it has ended.
        let mark = self.sparse.as_ref().map(|s| lock(&s.space).mark());
        self.storage
            .flush()
            .map_err(|e| Error::io(format!("{}: flush", self.name()), e))?;
        if let (Some(s), Some(mark)) = (&self.sparse, mark) {
            lock(&s.space).settle(mark);
        }
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let mut out = Vec::new();
        for (o, l, layer) in self.layers(offset, len)? {
            let state = if layer.is_some() {
                ExtentState::Data
            } else {
                ExtentState::Zero
            };
            push_extent(&mut out, o, l, state);
        }
        Ok(out)
    }

    fn locate(&self, offset: u64, len: u64) -> Result<Option<Vec<Located>>> {
        check_range(self.size, offset, len)?;
        let mut out = Vec::new();
        Ok(self.locate_unchecked(offset, len, &mut out)?.then_some(out))
    }

    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.size, offset, len)?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        match &self.sparse {
            None => Ok(()),
            Some(s) => self.trim_sparse(s, offset, len),
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.size, offset, len)?;
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // Skip ranges that already read as zeros in a dynamic image.
        let ranges: Vec<Extent> = match (&self.sparse, &self.parent) {
            (Some(_), None) => self
                .allocation(offset, len)?
                .into_iter()
                .filter(|e| e.state == ExtentState::Data)
                .collect(),
            _ => vec![Extent {
                offset,
                len,
                state: ExtentState::Data,
            }],
        };
        for e in ranges {
            write_zeros_through(self, e.offset, e.len)?;
        }
        Ok(())
    }
}
