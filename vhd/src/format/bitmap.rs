//! Sector bitmaps (SPECS §2.3): the bitmap before each block's data has one bit per
//! sector, most significant bit first; a set bit means this image holds the sector.

/// Whether sector `i` of a block is marked in `bitmap` (MSB first).
pub fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap
        .get(i / 8)
        .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

/// Marks sectors `[first, first + count)` in `bitmap`.
pub fn set_bits(bitmap: &mut [u8], first: usize, count: usize) {
    for i in first..first + count {
        if let Some(b) = bitmap.get_mut(i / 8) {
            *b |= 0x80 >> (i % 8);
        }
    }
}

/// Clears sectors `[first, first + count)` in `bitmap`.
pub fn clear_bits(bitmap: &mut [u8], first: usize, count: usize) {
    for i in first..first + count {
        if let Some(b) = bitmap.get_mut(i / 8) {
            *b &= !(0x80 >> (i % 8));
        }
    }
}

/// The length of the run of equal bits starting at sector `first`, at most `max`.
pub fn run_len(bitmap: &[u8], first: usize, max: usize) -> usize {
    let v = bit(bitmap, first);
    (first..first + max)
        .take_while(|&i| bit(bitmap, i) == v)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_runs() {
        let mut bm = [0u8; 4];
        set_bits(&mut bm, 7, 3);
        assert_eq!(bm, [0x01, 0xc0, 0, 0]);
        assert!(bit(&bm, 8) && !bit(&bm, 6));
        assert_eq!(run_len(&bm, 7, 20), 3);
        assert_eq!(run_len(&bm, 0, 5), 5);
        clear_bits(&mut bm, 8, 1);
        assert_eq!(bm, [0x01, 0x40, 0, 0]);
    }
}
