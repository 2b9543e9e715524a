//! The write side of a dynamic or differencing image: writes into allocated blocks
//! (data, then the sector bitmap) and block allocation (data, bitmap, BAT entry,
//! footer: the crash-safe order of the module docs of [`super`]).

use super::spans::spans;
use super::{Image, STATE_ALL_SET, Sparse};
use crate::error::{Error, Result};
use crate::format::bat::UNUSED;
use crate::format::bitmap::set_bits;
use crate::format::footer::FOOTER_LEN;
use std::sync::atomic::Ordering;

impl Image {
    /// Writes a sector-aligned run into one block, allocating the block if needed.
    fn write_block(
        &self,
        s: &Sparse,
        next_free: &mut u64,
        block: usize,
        first_sector: usize,
        data: &[u8],
    ) -> Result<()> {
        let sectors = data.len() / 512;
        let entry = s.bat[block].load(Ordering::Acquire);
        if entry != UNUSED {
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
            return Ok(());
        }
        // Allocate at the next free offset: data, bitmap, BAT entry, footer.
        let at = *next_free;
        let total = s.bitmap_len + s.block_size;
        let file_len = self
            .storage
            .len()
            .map_err(|e| Error::io("image length", e))?;
        let data_start = at + s.bitmap_len;
        if file_len > data_start {
            // Stale bytes (an interrupted allocation) where the new block goes: zero them.
            let stale_end = file_len.min(at + total);
            let zeros = vec![0u8; (stale_end - data_start).min(1 << 20) as usize];
            let mut pos = data_start;
            while pos < stale_end {
                let n = (stale_end - pos).min(zeros.len() as u64) as usize;
                self.write_storage(&zeros[..n], pos, "zeroing reused space")?;
                pos += n as u64;
            }
        }
        self.write_storage(data, data_start + first_sector as u64 * 512, "block data")?;
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
        let mut bm = vec![0; s.bitmap_len as usize];
        if self.parent.is_some() {
            set_bits(&mut bm, first_sector, sectors);
        } else {
            // Dynamic: every sector of the new block is valid (unwritten ones are zero),
            // which is what qemu writes and what readers that ignore bitmaps expect.
            set_bits(&mut bm, 0, s.sectors_per_block);
        }
        self.write_storage(&bm, at, "sector bitmap")?;
        let sector = u32::try_from(at / 512)
            .ok()
            .filter(|&v| v != UNUSED)
            .ok_or_else(|| {
                Error::NoSpace(format!(
                    "{}: file offsets beyond 2 TiB cannot be addressed by the BAT",
                    self.name()
                ))
            })?;
        self.write_storage(
            &sector.to_be_bytes(),
            s.header.table_offset + block as u64 * 4,
            "BAT entry",
        )?;
        s.bat[block].store(sector, Ordering::Release);
        self.remember_bitmap(s, block, bm, false);
        let footer = self.layout_footer.to_bytes();
        self.write_storage(&footer, at + total, "footer")?;
        self.storage
            .set_len(at + total + FOOTER_LEN as u64)
            .map_err(|e| Error::io("setting the image length", e))?;
        *next_free = at + total;
        Ok(())
    }

    pub(super) fn write_sparse(&self, s: &Sparse, buf: &[u8], offset: u64) -> Result<()> {
        let mut next_free = s.next_free.lock().unwrap_or_else(|e| e.into_inner());
        for span in spans(offset, buf.len() as u64, s.block_size) {
            let (block, in_block, n) = (span.block, span.in_block, span.len as usize);
            let src = &buf[span.done as usize..span.done as usize + n];
            let first_sector = (in_block / 512) as usize;
            if in_block.is_multiple_of(512) && n.is_multiple_of(512) {
                self.write_block(s, &mut next_free, block, first_sector, src)?;
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
                self.write_block(s, &mut next_free, block, first_sector, &aligned)?;
            }
        }
        Ok(())
    }
}
