//! Where the blocks of a dynamic or differencing image go in its file: the end of the
//! data area, or a slot a trimmed block gave back.
//!
//! A slot is the bitmap and data of one block (`bitmap_len + block_size` bytes); slots of
//! one image all have that length. A slot freed by TRIM is *pending* until a flush that
//! began after its BAT entry was cleared has finished: only then is the cleared entry
//! durable, and only then may the slot hold another block. Reusing it earlier could leave,
//! after a crash, the old entry and the new one pointing at the same bytes.
//!
//! ```text
//!  trim: BAT entry := unused --> pending --(a flush begun after it ends)--> free
//!  allocation: lowest free slot, else the end of the data area (the file grows)
//! ```

use std::collections::BTreeMap;

/// A slot a block may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// File offset of the slot (where the block's bitmap goes).
    pub offset: u64,
    /// True when the slot is known to read as zeros (its hole was punched).
    pub zeroed: bool,
}

/// The free space of a sparse image's data area; the image's write lock.
#[derive(Debug)]
pub(crate) struct Space {
    /// Where a block goes when no slot is free: the end of the data area, where the
    /// trailing footer lies.
    pub end: u64,
    /// Slots whose unlinking is durable, by offset (value: zeroed).
    free: BTreeMap<u64, bool>,
    /// Slots unlinked but maybe not durably so, with their release number.
    pending: Vec<(u64, Slot)>,
    /// Slots released so far (the next release number).
    released: u64,
}

impl Space {
    /// The space of an image whose data area starts at `data_start`, holding blocks at
    /// `blocks` (file offsets), each slot `slot_len` bytes. The gaps between
    /// `data_start` and the last block that fit whole slots are free: space left by
    /// trims before the image was closed, or by an allocation a crash interrupted (its
    /// BAT entry never written, so nothing refers to it). `end` is where the last block
    /// ends (at least `data_start`).
    pub fn rebuild(data_start: u64, mut blocks: Vec<u64>, slot_len: u64) -> Space {
        blocks.sort_unstable();
        let mut free = BTreeMap::new();
        let mut cursor = data_start;
        for b in blocks {
            let mut at = cursor;
            while at.saturating_add(slot_len) <= b {
                free.insert(at, false);
                at += slot_len;
            }
            cursor = cursor.max(b.saturating_add(slot_len));
        }
        Space {
            end: cursor,
            free,
            pending: Vec::new(),
            released: 0,
        }
    }

    /// The space of an image that allocates only at the end (read-only images never
    /// allocate; no free list is kept).
    pub fn at_end(end: u64) -> Space {
        Space {
            end,
            free: BTreeMap::new(),
            pending: Vec::new(),
            released: 0,
        }
    }

    /// Takes the lowest free slot, if any.
    pub fn take(&mut self) -> Option<Slot> {
        self.free
            .pop_first()
            .map(|(offset, zeroed)| Slot { offset, zeroed })
    }

    /// Gives a slot back unused (an allocation into it failed).
    pub fn put_back(&mut self, slot: Slot) {
        self.free.insert(slot.offset, slot.zeroed);
    }

    /// Records a slot whose block was just unlinked (its BAT entry written as unused).
    pub fn release(&mut self, slot: Slot) {
        self.pending.push((self.released, slot));
        self.released += 1;
    }

    /// The mark to pass to [`Space::settle`] once a flush that begins now has ended.
    pub fn mark(&self) -> u64 {
        self.released
    }

    /// Makes the slots released before `mark` reusable: a flush begun after their
    /// release has made their unlinking durable.
    pub fn settle(&mut self, mark: u64) {
        let (done, wait): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|(n, _)| *n < mark);
        self.pending = wait;
        for (_, slot) in done {
            self.free.insert(slot.offset, slot.zeroed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_between_blocks_are_free_slots() {
        // Data from 1000, slots of 100: blocks at 1100 and 1450 (gaps of 1 and 2.5 slots).
        let s = Space::rebuild(1000, vec![1450, 1100], 100);
        assert_eq!(s.end, 1550);
        assert_eq!(
            s.free.keys().copied().collect::<Vec<_>>(),
            [1000, 1200, 1300]
        );
        assert_eq!(Space::rebuild(1000, vec![], 100).end, 1000);
    }

    #[test]
    fn released_slots_wait_for_a_flush_begun_after_them() {
        let mut s = Space::at_end(5000);
        let slot = |offset| Slot {
            offset,
            zeroed: true,
        };
        s.release(slot(3000));
        let mark = s.mark();
        s.release(slot(1000)); // during the flush: not covered by it
        assert_eq!(s.take(), None, "nothing is reusable before the flush ends");
        s.settle(mark);
        assert_eq!(s.take(), Some(slot(3000)));
        assert_eq!(s.take(), None);
        assert_eq!(s.pending.len(), 1);
        s.settle(s.mark());
        assert_eq!(s.take(), Some(slot(1000)));
    }
}
