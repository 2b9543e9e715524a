//! The read side of an image: where each run of a block is stored (this file, or
//! below it), reads through the chain, chain layers and file locations of a range.

use super::spans::spans;
use super::{Image, Piece, STATE_ALL_CLEAR, STATE_ALL_SET, STATE_UNKNOWN, Sparse, read_lock};
use crate::engine::disk::{Located, check_range, push_located};
use crate::error::Result;
use crate::format::bat::UNUSED;
use crate::format::bitmap::{bit, run_len};
use std::sync::atomic::Ordering;

impl Image {
    /// Calls `f` for each run of `[in_block, in_block + len)` of `block` with where it
    /// is stored.
    pub(super) fn pieces(
        &self,
        s: &Sparse,
        block: usize,
        in_block: u64,
        len: u64,
        f: &mut dyn FnMut(u64, Piece) -> Result<()>,
    ) -> Result<()> {
        let entry = s.bat[block].load(Ordering::Acquire);
        if entry == UNUSED {
            return f(len, Piece::Below);
        }
        let data = u64::from(entry) * 512 + s.bitmap_len;
        match self.block_state(s, block, entry)? {
            STATE_ALL_SET => f(len, Piece::Here(data + in_block)),
            STATE_ALL_CLEAR => f(len, Piece::Below),
            _ => {
                // The cache's read guard is held while the runs are handed out: `f` reads
                // this image's storage or the parent, never this cache.
                let partial = read_lock(&s.partial);
                let Some(bm) = partial.get(&(block as u32)) else {
                    drop(partial);
                    // Raced with a writer that just completed the bitmap: retry.
                    s.state[block].store(STATE_UNKNOWN, Ordering::Release);
                    return self.pieces(s, block, in_block, len, f);
                };
                let mut pos = in_block;
                let end = in_block + len;
                while pos < end {
                    let sector = (pos / 512) as usize;
                    let last = ((end - 1) / 512) as usize;
                    let run = run_len(bm, sector, last - sector + 1) as u64;
                    let run_end = ((sector as u64 + run) * 512).min(end);
                    let n = run_end - pos;
                    if bit(bm, sector) {
                        f(n, Piece::Here(data + pos))?;
                    } else {
                        f(n, Piece::Below)?;
                    }
                    pos = run_end;
                }
                Ok(())
            }
        }
    }

    /// Reads what lies below this image at `offset`: the parent, or zeros.
    fn read_below(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        match &self.parent {
            Some(p) => {
                let psize = p.size;
                let avail = psize.saturating_sub(offset).min(buf.len() as u64) as usize;
                p.read_unchecked(&mut buf[..avail], offset)?;
                buf[avail..].fill(0);
                Ok(())
            }
            None => {
                buf.fill(0);
                Ok(())
            }
        }
    }

    pub(super) fn read_unchecked(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let Some(s) = &self.sparse else {
            return self.read_storage(buf, offset, "fixed data");
        };
        for span in spans(offset, buf.len() as u64, s.block_size) {
            let chunk = &mut buf[span.done as usize..(span.done + span.len) as usize];
            if let Some(flat) = &self.flat {
                self.flat_read_block(flat, span.block, span.in_block, chunk)?;
                continue;
            }
            let mut at = 0usize;
            self.pieces(s, span.block, span.in_block, span.len, &mut |len, piece| {
                let part = &mut chunk[at..at + len as usize];
                match piece {
                    Piece::Here(off) => self.read_storage(part, off, "block data")?,
                    Piece::Below => self.read_below(part, span.offset + at as u64)?,
                }
                at += len as usize;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Runs of `[offset, offset + len)` with the chain layer that holds them (0 = this
    /// image, 1 = its parent, ...), or `None` where the chain holds nothing (zeros).
    pub fn layers(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64, Option<usize>)>> {
        check_range(self.size, offset, len)?;
        let mut out = Vec::new();
        self.layers_unchecked(offset, len, 0, &mut out)?;
        Ok(out)
    }

    fn layers_unchecked(
        &self,
        offset: u64,
        len: u64,
        depth: usize,
        out: &mut Vec<(u64, u64, Option<usize>)>,
    ) -> Result<()> {
        let push = |out: &mut Vec<(u64, u64, Option<usize>)>, o: u64, l: u64, d: Option<usize>| {
            if l == 0 {
                return;
            }
            match out.last_mut() {
                Some(last) if last.2 == d && last.0 + last.1 == o => last.1 += l,
                _ => out.push((o, l, d)),
            }
        };
        let Some(s) = &self.sparse else {
            push(out, offset, len, Some(depth));
            return Ok(());
        };
        for span in spans(offset, len, s.block_size) {
            let mut at = span.offset;
            self.pieces(s, span.block, span.in_block, span.len, &mut |l, piece| {
                match (piece, &self.parent) {
                    (Piece::Here(_), _) => push(out, at, l, Some(depth)),
                    (Piece::Below, None) => push(out, at, l, None),
                    (Piece::Below, Some(p)) => {
                        let avail = p.size.saturating_sub(at).min(l);
                        p.layers_unchecked(at, avail, depth + 1, out)?;
                        push(out, at + avail, l - avail, None);
                    }
                }
                at += l;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Appends where `[offset, offset + len)` is stored to `out`; false when some of it
    /// lies in a storage that is no file.
    pub(super) fn locate_unchecked(
        &self,
        offset: u64,
        len: u64,
        out: &mut Vec<Located>,
    ) -> Result<bool> {
        let here = |out: &mut Vec<Located>, at: u64, n: u64| match self.storage.file() {
            Some(file) => {
                let (file, offset, len) = (file.clone(), at, n);
                push_located(out, Located::File { file, offset, len });
                true
            }
            None => false,
        };
        let Some(s) = &self.sparse else {
            return Ok(here(out, offset, len));
        };
        let mut named = true;
        for span in spans(offset, len, s.block_size) {
            if !named {
                break;
            }
            let mut at = span.offset;
            self.pieces(s, span.block, span.in_block, span.len, &mut |l, piece| {
                named = named
                    && match (piece, &self.parent) {
                        (Piece::Here(off), _) => here(out, off, l),
                        (Piece::Below, None) => {
                            push_located(out, Located::Zeros(l));
                            true
                        }
                        (Piece::Below, Some(p)) => {
                            let avail = p.size.saturating_sub(at).min(l);
                            let ok = p.locate_unchecked(at, avail, out)?;
                            push_located(out, Located::Zeros(l - avail));
                            ok
                        }
                    };
                at += l;
                Ok(())
            })?;
        }
        Ok(named)
    }
}
