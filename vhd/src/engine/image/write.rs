//! The write side of a dynamic or differencing image: writes into allocated blocks
//! (data, then the sector bitmap) and block allocation into a free slot or at the end
//! (data, bitmap, BAT entry, footer: the crash-safe order of the module docs of
//! [`super`]).

use super::space::{Slot, Space};
use super::spans::spans;
use super::{Image, STATE_ALL_SET, Sparse, lock};
use crate::error::{Error, Result};
use crate::format::bat::UNUSED;
use crate::format::bitmap::set_bits;
use crate::format::footer::FOOTER_LEN;
use std::sync::atomic::Ordering;

/// A sector-aligned run of bytes to write into one block.
#[derive(Clone, Copy)]
struct Run<'a> {
    block: usize,
    /// The first sector of the block it covers.
    first_sector: usize,
    /// A whole number of sectors.
    data: &'a [u8],
}

impl Image {
    /// Writes a run into its block, allocating the block if needed.
    fn write_block(&self, s: &Sparse, space: &mut Space, run: Run<'_>) -> Result<()> {
        let Run {
            block,
            first_sector,
            data,
        } = run;
        let entry = s.bat[block].load(Ordering::Acquire);
        if entry == UNUSED {
            return self.allocate(s, space, run);
        }
        let sectors = data.len() / 512;
        let base = u64::from(entry) * 512;
        self.write_storage(
            data,
            base + s.bitmap_len + first_sector as u64 * 512,
            "block data",
        )?;
        if self.block_state(s, block, entry)? == STATE_ALL_SET {
            return Ok(());
        }
        let mut bm = vec![0; s.bitmap_len as usize];
        self.read_storage(&mut bm, base, "sector bitmap")?;
        set_bits(&mut bm, first_sector, sectors);
        let lo = first_sector / 8;
        let hi = (first_sector + sectors).div_ceil(8);
        self.write_storage(&bm[lo..hi], base + lo as u64, "sector bitmap")?;
        self.remember_bitmap(s, block, bm, false);
        Ok(())
    }

    /// Allocates the block of `run` for a first write into it: in the lowest free slot, else at the
    /// end of the file. Order: data (the rest of the slot zeroed), bitmap, BAT entry,
    /// and, when the file grew, the footer at its new end.
    fn allocate(&self, s: &Sparse, space: &mut Space, run: Run<'_>) -> Result<()> {
        let Some(slot) = space.take() else {
            return self.allocate_at_end(s, space, run);
        };
        let done = self
            .fill_slot(s, slot, run)
            .and_then(|()| self.link(s, slot.offset, run));
        if done.is_err() {
            space.put_back(slot);
        }
        done
    }

    /// Writes the data of a new block into a free slot, zeroing the rest of the slot's
    /// data unless its hole was punched (it may hold a trimmed block's bytes).
    fn fill_slot(&self, s: &Sparse, slot: Slot, run: Run<'_>) -> Result<()> {
        let data_start = slot.offset + s.bitmap_len;
        let from = data_start + run.first_sector as u64 * 512;
        let to = from + run.data.len() as u64;
        if !slot.zeroed {
            self.write_zeros(data_start, from)?;
            self.write_zeros(to, data_start + s.block_size)?;
        }
        self.write_storage(run.data, from, "block data")
    }

    /// Allocates `block` at the end of the file.
    fn allocate_at_end(&self, s: &Sparse, space: &mut Space, run: Run<'_>) -> Result<()> {
        let at = space.end;
        let total = s.bitmap_len + s.block_size;
        let file_len = self
            .storage
            .len()
            .map_err(|e| Error::io("image length", e))?;
        let data_start = at + s.bitmap_len;
        if file_len > data_start {
            // Stale bytes (an interrupted allocation, trimmed blocks) where the new block
            // goes: zero them.
            self.write_zeros(data_start, file_len.min(at + total))?;
        }
        self.write_storage(
            run.data,
            data_start + run.first_sector as u64 * 512,
            "block data",
        )?;
        if self
            .storage
            .len()
            .map_err(|e| Error::io("image length", e))?
            < at + total
        {
            // The whole block exists (as zeros) before the BAT can point at it.
            self.storage
                .set_len(at + total)
                .map_err(|e| Error::io("extending the image", e))?;
        }
        self.link(s, at, run)?;
        let footer = self.layout_footer.to_bytes();
        self.write_storage(&footer, at + total, "footer")?;
        self.storage
            .set_len(at + total + FOOTER_LEN as u64)
            .map_err(|e| Error::io("setting the image length", e))?;
        space.end = at + total;
        Ok(())
    }

    /// Writes the bitmap of a new block at `at` (its data already there), then its BAT
    /// entry: from here on the block is the image's.
    fn link(&self, s: &Sparse, at: u64, run: Run<'_>) -> Result<()> {
        let Run {
            block,
            first_sector,
            data,
        } = run;
        let sectors = data.len() / 512;
        let sector = u32::try_from(at / 512)
            .ok()
            .filter(|&v| v != UNUSED)
            .ok_or_else(|| {
                Error::NoSpace(format!(
                    "{}: file offsets beyond 2 TiB cannot be addressed by the BAT",
                    self.name()
                ))
            })?;
        let mut bm = vec![0; s.bitmap_len as usize];
        if self.parent.is_some() {
            set_bits(&mut bm, first_sector, sectors);
        } else {
            // Dynamic: every sector of the new block is valid (unwritten ones are zero),
            // which is what qemu writes and what readers that ignore bitmaps expect.
            set_bits(&mut bm, 0, s.sectors_per_block);
        }
        self.write_storage(&bm, at, "sector bitmap")?;
        self.write_storage(
            &sector.to_be_bytes(),
            s.header.table_offset + block as u64 * 4,
            "BAT entry",
        )?;
        s.bat[block].store(sector, Ordering::Release);
        s.allocated.fetch_add(1, Ordering::AcqRel);
        self.remember_bitmap(s, block, bm, false);
        Ok(())
    }

    /// Writes zeros over the file bytes `[from, to)`.
    fn write_zeros(&self, from: u64, to: u64) -> Result<()> {
        let zeros = vec![0u8; to.saturating_sub(from).min(1 << 20) as usize];
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(zeros.len() as u64) as usize;
            self.write_storage(&zeros[..n], pos, "zeroing reused space")?;
            pos += n as u64;
        }
        Ok(())
    }

    pub(super) fn write_sparse(&self, s: &Sparse, buf: &[u8], offset: u64) -> Result<()> {
        let mut space = lock(&s.space);
        for span in spans(offset, buf.len() as u64, s.block_size) {
            let (block, in_block, n) = (span.block, span.in_block, span.len as usize);
            let src = &buf[span.done as usize..span.done as usize + n];
            let first_sector = (in_block / 512) as usize;
            if in_block.is_multiple_of(512) && n.is_multiple_of(512) {
                let run = Run {
                    block,
                    first_sector,
                    data: src,
                };
                self.write_block(s, &mut space, run)?;
            } else {
                // Read-modify-write of the partial sectors (copy-on-write from the parent).
                // The virtual size is a whole number of sectors, so both edge sectors exist.
                let start = first_sector as u64 * 512;
                let end = (in_block + n as u64).div_ceil(512) * 512;
                let mut aligned = vec![0u8; (end - start) as usize];
                let head = (in_block - start) as usize;
                let block_base = block as u64 * s.block_size;
                if head != 0 {
                    self.read_unchecked(&mut aligned[..512], block_base + start)?;
                }
                let tail = end - 512;
                if !(in_block + n as u64).is_multiple_of(512) && (tail > start || head == 0) {
                    let from = (tail - start) as usize;
                    self.read_unchecked(&mut aligned[from..from + 512], block_base + tail)?;
                }
                aligned[head..head + n].copy_from_slice(src);
                let run = Run {
                    block,
                    first_sector,
                    data: &aligned,
                };
                self.write_block(s, &mut space, run)?;
            }
        }
        Ok(())
    }
}
