//! Splitting a byte range of the virtual disk into one piece per block: the loop under
//! every read, write, layer listing, location and trim of a sparse image.

/// One block's share of a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// The block.
    pub block: usize,
    /// Where the share starts inside the block.
    pub in_block: u64,
    /// Where it starts on the virtual disk.
    pub offset: u64,
    /// Where it starts relative to the range (an index into the caller's buffer).
    pub done: u64,
    /// Its length in bytes, never more than the rest of the block.
    pub len: u64,
}

/// The shares of `[offset, offset + len)` in blocks of `block_size` bytes, in order.
/// The range must not overflow (callers checked it against the disk size).
pub(crate) fn spans(offset: u64, len: u64, block_size: u64) -> impl Iterator<Item = Span> {
    let end = offset + len;
    let mut pos = offset;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let in_block = pos % block_size;
        let span = Span {
            block: (pos / block_size) as usize,
            in_block,
            offset: pos,
            done: pos - offset,
            len: (block_size - in_block).min(end - pos),
        };
        pos += span.len;
        Some(span)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_splits_at_block_boundaries() {
        let got: Vec<_> = spans(1000, 3000, 1024)
            .map(|s| (s.block, s.in_block, s.offset, s.done, s.len))
            .collect();
        assert_eq!(
            got,
            [
                (0, 1000, 1000, 0, 24),
                (1, 0, 1024, 24, 1024),
                (2, 0, 2048, 1048, 1024),
                (3, 0, 3072, 2072, 928),
            ]
        );
        assert_eq!(spans(5, 0, 1024).count(), 0);
    }
}
