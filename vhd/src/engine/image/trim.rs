//! TRIM of a dynamic or differencing image: giving back the room of blocks the device
//! no longer uses (NBD TRIM: what the range reads afterwards is unspecified).
//!
//! A block the range covers entirely is unlinked: its BAT entry is written as unused,
//! then its slot's hole is punched (the file system gets the space back at once; the
//! file keeps its length) and the slot joins the pending slots of `space`, reused by a
//! new block only after the next flush has made the unlinking durable. Until then a
//! crash finds the old entry, pointing at its own block (or at zeros, where the hole was
//! punched): never two entries at one slot. The block then reads from below (the parent,
//! or zeros in a dynamic image).
//!
//! In a differencing image a partly covered block has the bits of its wholly covered
//! sectors cleared (they read from the parent again); a block whose bitmap becomes
//! clear is unlinked. In a dynamic image a partial trim does nothing: clearing bits
//! there would change nothing qemu and others read.
//!
//! Reads take no lock: a read of a range racing with its trim returns the old bytes,
//! zeros, or what lies below; one that also spans a flush and the slot's reuse by
//! another block of the same image could return that block's bytes. Either way only a
//! range the device itself declared unused, as NBD TRIM allows.

use std::sync::atomic::Ordering;

use super::space::{Slot, Space};
use super::spans::{Span, spans};
use super::{Image, STATE_ALL_CLEAR, STATE_UNKNOWN, Sparse, lock, write_lock};
use crate::error::Result;
use crate::format::bat::UNUSED;
use crate::format::bitmap::clear_bits;

impl Image {
    pub(super) fn trim_sparse(&self, s: &Sparse, offset: u64, len: u64) -> Result<()> {
        let mut space = lock(&s.space);
        for span in spans(offset, len, s.block_size) {
            let entry = s.bat[span.block].load(Ordering::Acquire);
            if entry == UNUSED {
                continue;
            }
            // The last block may be cut short by the virtual size.
            let whole = span.in_block == 0
                && (span.len == s.block_size || span.offset + span.len == self.size);
            if whole {
                self.unlink(s, &mut space, span.block, entry)?;
            } else if self.parent.is_some() {
                self.clear_sectors(s, &mut space, span, entry)?;
            }
        }
        Ok(())
    }

    /// Clears the bitmap bits of the sectors `span` covers entirely; unlinks the block
    /// when none is left.
    fn clear_sectors(&self, s: &Sparse, space: &mut Space, span: Span, entry: u32) -> Result<()> {
        let first = span.in_block.div_ceil(512) as usize;
        let end = ((span.in_block + span.len) / 512) as usize;
        if first >= end || self.block_state(s, span.block, entry)? == STATE_ALL_CLEAR {
            return Ok(());
        }
        let base = u64::from(entry) * 512;
        let mut bm = vec![0; s.bitmap_len as usize];
        self.read_storage(&mut bm, base, "sector bitmap")?;
        clear_bits(&mut bm, first, end - first);
        if bm.iter().all(|&b| b == 0) {
            return self.unlink(s, space, span.block, entry);
        }
        let lo = first / 8;
        let hi = end.div_ceil(8);
        self.write_storage(&bm[lo..hi], base + lo as u64, "sector bitmap")?;
        self.remember_bitmap(s, span.block, bm, false);
        Ok(())
    }

    /// Unlinks `block` (stored at sector `entry`): BAT entry, then the slot's hole, then
    /// the slot to the pending ones.
    fn unlink(&self, s: &Sparse, space: &mut Space, block: usize, entry: u32) -> Result<()> {
        self.write_storage(
            &UNUSED.to_be_bytes(),
            s.header.table_offset + block as u64 * 4,
            "BAT entry",
        )?;
        {
            let mut partial = write_lock(&s.partial);
            s.bat[block].store(UNUSED, Ordering::Release);
            partial.remove(&(block as u32));
            s.state[block].store(STATE_UNKNOWN, Ordering::Release);
        }
        s.allocated.fetch_sub(1, Ordering::AcqRel);
        let offset = u64::from(entry) * 512;
        let zeroed = self
            .storage
            .punch_hole(offset, s.bitmap_len + s.block_size)
            .unwrap_or_else(|e| {
                tracing::debug!(image = %self.name(), offset, "punching a hole failed: {e}");
                false
            });
        space.release(Slot { offset, zeroed });
        Ok(())
    }
}
