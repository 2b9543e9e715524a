//! The flattened view of a read-only chain: per block, which layer holds each run of
//! sectors, so that a read costs one lookup and one positional read whatever the depth
//! of the chain (instead of one bitmap lookup per layer).
//!
//! Used only when it cannot go stale: this image and every parent are read-only, all
//! have the same virtual size, and all sparse layers share one block size (fixed layers
//! are fine). Runs of a block are computed on first use from the layers' bitmaps.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{BlockHasher, Image, STATE_ALL_CLEAR, STATE_ALL_SET, read_lock, write_lock};
use crate::error::Result;
use crate::format::bat::UNUSED;
use crate::format::bitmap::bit;

/// Layer number meaning "no layer holds it": zeros.
const NONE: u8 = u8::MAX;

/// One run: from `start` (sector in block) to the next run's start, held by `layer`.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u32,
    layer: u8,
}

/// Cache of resolved blocks.
#[derive(Default)]
pub(super) struct Flat {
    blocks: std::sync::RwLock<HashMap<u32, Arc<[Run]>, BuildHasherDefault<BlockHasher>>>,
}

impl Flat {
    /// A cache for `image` if the chain qualifies (see the module docs).
    pub(super) fn for_chain(image: &Image) -> Option<Flat> {
        let s = image.sparse.as_ref()?;
        image.parent.as_ref()?;
        let mut cur = Some(image);
        let mut depth = 0;
        while let Some(i) = cur {
            if !i.read_only || i.size != image.size || depth >= usize::from(NONE) {
                return None;
            }
            if let Some(ls) = &i.sparse
                && ls.block_size != s.block_size
            {
                return None;
            }
            depth += 1;
            cur = i.parent.as_deref();
        }
        Some(Flat::default())
    }
}

fn layer(top: &Image, n: u8) -> &Image {
    let mut cur = top;
    for _ in 0..n {
        cur = cur.parent.as_deref().unwrap_or(cur);
    }
    cur
}

impl Image {
    /// Computes the runs of `block` from every layer's BAT and bitmap.
    fn resolve_block(&self, block: usize) -> Result<Arc<[Run]>> {
        let s = self
            .sparse
            .as_ref()
            .expect("flat mode implies a sparse image");
        let spb = s.sectors_per_block;
        let mut owner = vec![NONE; spb];
        let mut unresolved = spb;
        let mut cur = Some(self);
        let mut depth: u8 = 0;
        while let (Some(img), true) = (cur, unresolved > 0) {
            match &img.sparse {
                None => {
                    owner
                        .iter_mut()
                        .filter(|o| **o == NONE)
                        .for_each(|o| *o = depth);
                    unresolved = 0;
                }
                Some(ls) => {
                    let entry = ls.bat[block].load(Ordering::Acquire);
                    if entry != UNUSED {
                        match img.block_state(ls, block, entry)? {
                            STATE_ALL_SET => {
                                owner
                                    .iter_mut()
                                    .filter(|o| **o == NONE)
                                    .for_each(|o| *o = depth);
                                unresolved = 0;
                            }
                            STATE_ALL_CLEAR => {}
                            _ => {
                                let partial = read_lock(&ls.partial);
                                if let Some(bm) = partial.get(&(block as u32)) {
                                    for (i, o) in owner.iter_mut().enumerate() {
                                        if *o == NONE && bit(bm, i) {
                                            *o = depth;
                                            unresolved -= 1;
                                        }
                                    }
                                } else {
                                    drop(partial);
                                    return self.resolve_block(block);
                                }
                            }
                        }
                    }
                }
            }
            cur = img.parent.as_deref();
            depth += 1;
        }
        let mut runs: Vec<Run> = Vec::new();
        for (i, &o) in owner.iter().enumerate() {
            if runs.last().is_none_or(|r| r.layer != o) {
                runs.push(Run {
                    start: i as u32,
                    layer: o,
                });
            }
        }
        Ok(runs.into())
    }

    /// Reads `buf` at `in_block` of `block` through the flattened view.
    pub(super) fn flat_read_block(
        &self,
        flat: &Flat,
        block: usize,
        in_block: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let cached = read_lock(&flat.blocks).get(&(block as u32)).cloned();
        let runs = match cached {
            Some(r) => r,
            None => {
                let r = self.resolve_block(block)?;
                write_lock(&flat.blocks).insert(block as u32, r.clone());
                r
            }
        };
        let s = self
            .sparse
            .as_ref()
            .expect("flat mode implies a sparse image");
        let block_start = block as u64 * s.block_size;
        let first = (in_block / 512) as u32;
        let mut i = runs.partition_point(|r| r.start <= first).saturating_sub(1);
        let mut pos = in_block;
        let end = in_block + buf.len() as u64;
        while pos < end {
            let run = runs[i];
            let run_end = runs
                .get(i + 1)
                .map_or(s.block_size, |r| u64::from(r.start) * 512)
                .min(end);
            let part = &mut buf[(pos - in_block) as usize..(run_end - in_block) as usize];
            if run.layer == NONE {
                part.fill(0);
            } else {
                let img = layer(self, run.layer);
                match &img.sparse {
                    None => img.read_storage(part, block_start + pos, "fixed data")?,
                    Some(ls) => {
                        let entry = ls.bat[block].load(Ordering::Acquire);
                        img.read_storage(
                            part,
                            u64::from(entry) * 512 + ls.bitmap_len + pos,
                            "block data",
                        )?;
                    }
                }
            }
            pos = run_end;
            i += 1;
        }
        Ok(())
    }
}
