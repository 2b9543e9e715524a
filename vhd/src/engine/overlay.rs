//! A sparse write overlay over a read-only disk (the write cache of a device session in
//! standard mode): chunks of [`CHUNK`] bytes live in RAM up to a limit, then in an
//! unlinked spill file, and a quota caps the total. A write that would pass the quota
//! fails with [`ErrorKind::NoSpace`](crate::ErrorKind::NoSpace) before changing anything.
//!
//! Overlays of one server may also share a [`RamBudget`]: a chunk stays in RAM only while
//! both its overlay's own limit and the shared budget have room, so a hundred overlays
//! with 1 MiB each cost the server the budget, not a hundred MiB. Everything an overlay
//! holds (its RAM, its share of the budget, its spill file) goes when it is dropped.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::engine::disk::{
    Disk, Extent, ExtentState, Located, check_range, push_extent, push_located,
};
use crate::error::{Error, Result};

/// Granularity of an overlay, bytes.
pub const CHUNK: u64 = 4096;

/// Where an overlay keeps written data, and how much it may keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayLimits {
    /// Bytes of chunks kept in RAM before spilling.
    pub ram_bytes: u64,
    /// Folder of the spill file (created on first spill, unlinked at once); `None`
    /// means RAM only.
    pub spill_dir: Option<PathBuf>,
    /// Total bytes of written chunks (RAM + spill) allowed; `None` means no limit.
    pub quota_bytes: Option<u64>,
}

/// RAM shared by several overlays (a server's budget for all its write overlays).
/// Cloning shares it.
#[derive(Debug, Clone)]
pub struct RamBudget(Arc<Budget>);

#[derive(Debug)]
struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl RamBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self(Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
        }))
    }

    /// Bytes the overlays sharing it hold in RAM now.
    pub fn used(&self) -> u64 {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they fit.
    fn take(&self, n: u64) -> bool {
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.0.limit)
            })
            .is_ok()
    }

    fn give(&self, n: u64) {
        self.0.used.fetch_sub(n, Ordering::AcqRel);
    }
}

#[derive(Debug)]
enum Chunk {
    Ram(Box<[u8]>),
    Spill(u64),
    Zero,
}

#[derive(Debug, Default)]
struct State {
    chunks: HashMap<u64, Chunk>,
    ram_used: u64,
    spill: Option<File>,
    spill_slots: u64,
    free_slots: Vec<u64>,
}

impl State {
    fn used(&self) -> u64 {
        self.ram_used + (self.spill_slots - self.free_slots.len() as u64) * CHUNK
    }
}

/// `[offset, end)` cut at chunk bounds, as (start, length, the chunk held there);
/// neighbouring chunks the overlay does not hold come as one piece, so the base is
/// asked once for them.
fn pieces(st: &State, offset: u64, end: u64) -> impl Iterator<Item = (u64, u64, Option<&Chunk>)> {
    let mut pos = offset;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let start = pos;
        let chunk = st.chunks.get(&(pos / CHUNK));
        pos = ((pos / CHUNK + 1) * CHUNK).min(end);
        while chunk.is_none() && pos < end && !st.chunks.contains_key(&(pos / CHUNK)) {
            pos = ((pos / CHUNK + 1) * CHUNK).min(end);
        }
        Some((start, pos - start, chunk))
    })
}

/// A sparse write overlay; see the module docs.
#[derive(Debug)]
pub struct Overlay {
    base: Arc<dyn Disk>,
    limits: OverlayLimits,
    size: u64,
    state: RwLock<State>,
    shared_ram: Option<RamBudget>,
}

impl std::fmt::Debug for dyn Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Disk({} bytes)", self.size())
    }
}

static SPILL_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Overlay {
    /// An empty overlay over `base` (which is only ever read).
    pub fn new(base: Arc<dyn Disk>, limits: OverlayLimits) -> Result<Overlay> {
        if let Some(dir) = &limits.spill_dir
            && !dir.is_dir()
        {
            return Err(Error::InvalidInput(format!(
                "spill folder {} does not exist",
                dir.display()
            )));
        }
        Ok(Overlay {
            size: base.size(),
            base,
            limits,
            state: RwLock::new(State::default()),
            shared_ram: None,
        })
    }

    /// The overlay, keeping chunks in RAM only while `budget` (shared with other
    /// overlays) has room as well as its own limit; past either it spills.
    pub fn sharing_ram(mut self, budget: RamBudget) -> Self {
        self.shared_ram = Some(budget);
        self
    }

    /// Gives `n` bytes of RAM back to the shared budget.
    fn give_ram(&self, n: u64) {
        if let Some(budget) = &self.shared_ram {
            budget.give(n);
        }
    }

    /// The disk under the overlay.
    pub fn base(&self) -> &Arc<dyn Disk> {
        &self.base
    }

    /// Bytes of chunks held (RAM plus spill), counted against the quota.
    pub fn used_bytes(&self) -> u64 {
        self.read_state().used()
    }

    /// Bytes of chunks held in RAM.
    pub fn ram_bytes(&self) -> u64 {
        self.read_state().ram_used
    }

    /// Drops every written chunk: the overlay reads as its base again.
    pub fn discard(&self) {
        let old = std::mem::take(&mut *self.write_state());
        self.give_ram(old.ram_used);
    }

    /// The written ranges, chunk aligned, in order: what differs from the base.
    pub fn written_ranges(&self) -> Vec<(u64, u64)> {
        let st = self.read_state();
        let mut idx: Vec<u64> = st.chunks.keys().copied().collect();
        idx.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for i in idx {
            let start = i * CHUNK;
            let len = CHUNK.min(self.size - start);
            match out.last_mut() {
                Some((o, l)) if *o + *l == start => *l += len,
                _ => out.push((start, len)),
            }
        }
        out
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn chunk_len(&self, idx: u64) -> usize {
        CHUNK.min(self.size - idx * CHUNK) as usize
    }

    fn read_chunk(&self, st: &State, idx: u64, buf: &mut [u8], within: usize) -> Result<bool> {
        match st.chunks.get(&idx) {
            Some(Chunk::Ram(b)) => buf.copy_from_slice(&b[within..within + buf.len()]),
            Some(Chunk::Zero) => buf.fill(0),
            Some(Chunk::Spill(slot)) => {
                let file = st
                    .spill
                    .as_ref()
                    .ok_or_else(|| Error::invalid("overlay", "spill", "slot without file"))?;
                file.read_exact_at(buf, slot * CHUNK + within as u64)
                    .map_err(|e| Error::io("overlay: reading the spill file", e))?;
            }
            None => return Ok(false),
        }
        Ok(true)
    }

    /// Stores a full chunk, placing it in RAM or the spill file.
    fn store(&self, st: &mut State, idx: u64, data: Vec<u8>) -> Result<()> {
        match st.chunks.get(&idx) {
            Some(Chunk::Ram(_)) => {
                st.chunks.insert(idx, Chunk::Ram(data.into_boxed_slice()));
                return Ok(());
            }
            Some(Chunk::Spill(slot)) => {
                let slot = *slot;
                let file = st
                    .spill
                    .as_ref()
                    .ok_or_else(|| Error::invalid("overlay", "spill", "slot without file"))?;
                return file
                    .write_all_at(&data, slot * CHUNK)
                    .map_err(|e| Error::io("overlay: writing the spill file", e));
            }
            _ => {}
        }
        if st.ram_used + CHUNK <= self.limits.ram_bytes
            && self.shared_ram.as_ref().is_none_or(|b| b.take(CHUNK))
        {
            st.ram_used += CHUNK;
            st.chunks.insert(idx, Chunk::Ram(data.into_boxed_slice()));
            return Ok(());
        }
        let Some(dir) = &self.limits.spill_dir else {
            return Err(Error::NoSpace(format!(
                "overlay: RAM limit of {} bytes reached and no spill folder",
                self.limits.ram_bytes
            )));
        };
        if st.spill.is_none() {
            let name = format!(
                ".vhd-overlay-{}-{}.spill",
                std::process::id(),
                SPILL_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = dir.join(name);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| {
                    Error::io(
                        format!("overlay: creating spill file {}", path.display()),
                        e,
                    )
                })?;
            let _ = std::fs::remove_file(&path);
            st.spill = Some(file);
        }
        let slot = match st.free_slots.pop() {
            Some(s) => s,
            None => {
                st.spill_slots += 1;
                st.spill_slots - 1
            }
        };
        let file = st
            .spill
            .as_ref()
            .ok_or_else(|| Error::invalid("overlay", "spill", "no file"))?;
        if let Err(e) = file.write_all_at(&data, slot * CHUNK) {
            st.free_slots.push(slot);
            return Err(Error::io("overlay: writing the spill file", e));
        }
        st.chunks.insert(idx, Chunk::Spill(slot));
        Ok(())
    }

    fn release(&self, st: &mut State, idx: u64) {
        match st.chunks.remove(&idx) {
            Some(Chunk::Ram(_)) => {
                st.ram_used -= CHUNK;
                self.give_ram(CHUNK);
            }
            Some(Chunk::Spill(slot)) => st.free_slots.push(slot),
            _ => {}
        }
    }

    fn check_quota(&self, st: &State, offset: u64, len: u64) -> Result<()> {
        let Some(quota) = self.limits.quota_bytes else {
            return Ok(());
        };
        let first = offset / CHUNK;
        let last = (offset + len).div_ceil(CHUNK);
        let new = (first..last)
            .filter(|i| matches!(st.chunks.get(i), None | Some(Chunk::Zero)))
            .count() as u64;
        let need = st.used() + new * CHUNK;
        if need > quota {
            return Err(Error::NoSpace(format!(
                "overlay quota of {quota} bytes reached ({} bytes used, this write needs {} more)",
                st.used(),
                new * CHUNK
            )));
        }
        Ok(())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let ram = self.read_state().ram_used;
        self.give_ram(ram);
    }
}

impl Disk for Overlay {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.size, offset, buf.len() as u64)?;
        let st = self.read_state();
        let mut done = 0usize;
        // Consecutive chunks absent from the overlay are read from the base at once.
        let mut base_run: Option<(usize, u64)> = None;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = pos / CHUNK;
            let within = (pos % CHUNK) as usize;
            let n = (CHUNK as usize - within).min(buf.len() - done);
            let hit = self.read_chunk(&st, idx, &mut buf[done..done + n], within)?;
            if hit {
                if let Some((from, at)) = base_run.take() {
                    self.base.read_at(&mut buf[from..done], at)?;
                }
            } else if base_run.is_none() {
                base_run = Some((done, pos));
            }
            done += n;
        }
        if let Some((from, at)) = base_run {
            self.base.read_at(&mut buf[from..], at)?;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.size, offset, buf.len() as u64)?;
        let mut st = self.write_state();
        self.check_quota(&st, offset, buf.len() as u64)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = pos / CHUNK;
            let within = (pos % CHUNK) as usize;
            let clen = self.chunk_len(idx);
            let n = (clen - within).min(buf.len() - done);
            let mut data = vec![0u8; CHUNK as usize];
            if n < clen && !self.read_chunk(&st, idx, &mut data[..clen], 0)? {
                self.base.read_at(&mut data[..clen], idx * CHUNK)?;
            }
            data[within..within + n].copy_from_slice(&buf[done..done + n]);
            self.store(&mut st, idx, data)?;
            done += n;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        // The overlay is volatile by design (it belongs to one boot): nothing to persist.
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        false
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        check_range(self.size, offset, len)?;
        let st = self.read_state();
        let mut out = Vec::new();
        for (pos, n, chunk) in pieces(&st, offset, offset + len) {
            match chunk {
                Some(Chunk::Zero) => push_extent(&mut out, pos, n, ExtentState::Zero),
                Some(_) => push_extent(&mut out, pos, n, ExtentState::Data),
                None => {
                    for e in self.base.allocation(pos, n)? {
                        push_extent(&mut out, e.offset, e.len, e.state);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Chunks the overlay holds are copied out (zeros stay zeros); the runs between
    /// them are located in the base.
    fn locate(&self, offset: u64, len: u64) -> Result<Option<Vec<Located>>> {
        check_range(self.size, offset, len)?;
        let st = self.read_state();
        let mut out = Vec::new();
        for (pos, n, chunk) in pieces(&st, offset, offset + len) {
            match chunk {
                Some(Chunk::Zero) => push_located(&mut out, Located::Zeros(n)),
                Some(_) => {
                    let mut bytes = vec![0u8; n as usize];
                    self.read_chunk(&st, pos / CHUNK, &mut bytes, (pos % CHUNK) as usize)?;
                    push_located(&mut out, Located::Bytes(bytes));
                }
                None => {
                    let Some(runs) = self.base.locate(pos, n)? else {
                        return Ok(None);
                    };
                    runs.into_iter().for_each(|r| push_located(&mut out, r));
                }
            }
        }
        Ok(Some(out))
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.size, offset, len)?;
        let end = offset + len;
        let first_full = offset.div_ceil(CHUNK);
        let last_full = end / CHUNK; // exclusive, in chunks
        let full_end = if end == self.size {
            end.div_ceil(CHUNK)
        } else {
            last_full
        };
        if first_full >= full_end {
            let zeros = vec![0u8; len as usize];
            return self.write_at(&zeros, offset);
        }
        let head = (first_full * CHUNK).min(end) - offset;
        if head > 0 {
            self.write_at(&vec![0u8; head as usize], offset)?;
        }
        {
            let mut st = self.write_state();
            for idx in first_full..full_end {
                self.release(&mut st, idx);
                st.chunks.insert(idx, Chunk::Zero);
            }
        }
        let tail_start = (full_end * CHUNK).min(end);
        if tail_start < end {
            self.write_at(&vec![0u8; (end - tail_start) as usize], tail_start)?;
        }
        Ok(())
    }

    /// Gives back the room of the whole chunks in the range (they read as zeroes from
    /// then on), so a device that deletes files can write again under its quota. Parts
    /// of chunks are left as they are: a discard promises nothing about the content.
    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.size, offset, len)?;
        let end = offset + len;
        let first_full = offset.div_ceil(CHUNK);
        let full_end = if end == self.size {
            end.div_ceil(CHUNK)
        } else {
            end / CHUNK
        };
        let mut st = self.write_state();
        for idx in first_full..full_end {
            self.release(&mut st, idx);
            st.chunks.insert(idx, Chunk::Zero);
        }
        Ok(())
    }
}
