//! Consistency check of an image file: every inconsistency named, with its offset.
//!
//! Checked: the trailing footer (present, checksum) and the copy at offset 0 (same
//! bytes); the dynamic header checksum; locator data inside the file and clear of the
//! BAT and blocks; BAT entries (inside the file, after the metadata, not overlapping,
//! already refused at open); the size of a fixed image's file.
//!
//! Space in the data area that no BAT entry references is counted, not reported: TRIM
//! leaves such gaps (the slots of unlinked blocks, reused by later allocations), and so
//! does an allocation a crash interrupted before its BAT entry. Only when the trailing
//! footer is missing too is the space after the last block a problem (the interrupted
//! allocation at the end of the file that left it).

use std::path::Path;

use crate::engine::chain::OpenOptions;
use crate::engine::image::Image;
use crate::error::{Error, Result};
use crate::format::bat::UNUSED;
use crate::format::footer::{DiskType, FOOTER_COOKIE, FOOTER_LEN, Footer};
use crate::format::header::{DynamicHeader, HEADER_LEN};

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File offset of the structure concerned.
    pub offset: u64,
    /// Which structure.
    pub structure: &'static str,
    /// What is wrong, and what it probably means.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "offset {}: {}: {}",
            self.offset, self.structure, self.what
        )
    }
}

/// The result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Every inconsistency found.
    pub problems: Vec<Problem>,
    /// Blocks allocated in the file.
    pub allocated_blocks: u64,
    /// Bytes of the data area no BAT entry references (freed by TRIM, or left by an
    /// interrupted allocation): not a problem, space the next allocations reuse.
    pub unreferenced_bytes: u64,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }

    fn add(&mut self, offset: u64, structure: &'static str, what: impl Into<String>) {
        self.problems.push(Problem {
            offset,
            structure,
            what: what.into(),
        });
    }
}

/// Checks the file of an open image (its parents are not checked; see [`check_file`]).
pub fn check(image: &Image) -> Result<CheckReport> {
    let storage = image.storage();
    let io = |e| Error::io("check: reading", e);
    let len = storage.len().map_err(io)?;
    let mut r = CheckReport::default();
    let mut tail = vec![0u8; FOOTER_LEN];
    let tail_at = len.saturating_sub(FOOTER_LEN as u64);
    storage.read_at(&mut tail, tail_at).map_err(io)?;
    if &tail[..8] != FOOTER_COOKIE {
        r.add(
            tail_at,
            "footer",
            "no footer at the end of the file (interrupted block allocation?)",
        );
    } else if !Footer::checksum_ok(&tail) {
        r.add(tail_at, "footer", "checksum wrong");
    }
    let Some(header) = image.header() else {
        let need = image.footer().current_size + FOOTER_LEN as u64;
        if len != need {
            r.add(
                0,
                "fixed image",
                format!(
                    "file is {len} bytes, a fixed image of {} bytes needs {need}",
                    image.footer().current_size
                ),
            );
        }
        return Ok(r);
    };
    let mut copy = vec![0u8; FOOTER_LEN];
    storage.read_at(&mut copy, 0).map_err(io)?;
    if !Footer::checksum_ok(&copy) {
        r.add(0, "footer copy", "checksum wrong");
    }
    if &tail[..8] == FOOTER_COOKIE && copy != tail {
        r.add(
            0,
            "footer copy",
            format!("differs from the footer at offset {tail_at}"),
        );
    }
    let header_at = image.footer().data_offset;
    let mut hb = vec![0u8; HEADER_LEN];
    storage.read_at(&mut hb, header_at).map_err(io)?;
    if !DynamicHeader::checksum_ok(&hb) {
        r.add(header_at, "dynamic header", "checksum wrong");
    }
    let bat = image.bat().unwrap_or_default();
    let total = header.bitmap_len() + u64::from(header.block_size);
    let bat_range = (header.table_offset, header.table_offset + header.bat_len());
    let mut blocks: Vec<(u64, u64)> = bat
        .iter()
        .filter(|&&e| e != UNUSED)
        .map(|&e| (u64::from(e) * 512, u64::from(e) * 512 + total))
        .collect();
    blocks.sort_unstable();
    r.allocated_blocks = blocks.len() as u64;
    for (i, l) in header
        .locators
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        let start = l.data_offset;
        let end = start.saturating_add(u64::from(l.data_length));
        if end > len {
            r.add(
                start,
                "parent locator",
                format!(
                    "slot {i} ({}): data runs past the end of the file",
                    l.code.name()
                ),
            );
            continue;
        }
        let overlaps = |(a, b): (u64, u64)| start < b && a < end;
        if overlaps(bat_range)
            || blocks.iter().any(|&b| overlaps(b))
            || overlaps((header_at, header_at + HEADER_LEN as u64))
        {
            r.add(
                start,
                "parent locator",
                format!(
                    "slot {i} ({}): data overlaps the header, BAT or a block",
                    l.code.name()
                ),
            );
        }
    }
    let meta_end = (header_at + HEADER_LEN as u64).max(bat_range.1);
    let footer_at = if &tail[..8] == FOOTER_COOKIE {
        tail_at
    } else {
        len
    };
    let locator_end = header
        .locators
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.data_offset.saturating_add(l.reserved_bytes()))
        .max()
        .unwrap_or(0);
    let data_start = meta_end.max(locator_end.min(footer_at));
    // Gaps between the blocks (from the start of the data area) and after the last.
    let mut cursor = data_start;
    for &(start, end) in &blocks {
        r.unreferenced_bytes += start.saturating_sub(cursor);
        cursor = cursor.max(end);
    }
    let orphan = footer_at.saturating_sub(cursor);
    r.unreferenced_bytes += orphan;
    if orphan > 0 && &tail[..8] != FOOTER_COOKIE {
        r.add(
            cursor,
            "blocks",
            format!(
                "{orphan} bytes after the last block are not referenced by the BAT and no footer follows them (an interrupted block allocation; reused by the next one)"
            ),
        );
    }
    if image.disk_type() == DiskType::Differencing && image.parent().is_none() {
        r.add(header_at, "dynamic header", "parent not attached");
    }
    Ok(r)
}

/// Opens `path` (leniently, read-only, with its chain) and checks every image of the
/// chain; an image that cannot be opened is reported as one problem.
pub fn check_file(path: &Path) -> CheckReport {
    let opts = OpenOptions::new(true);
    match opts.open(path) {
        Ok(img) => {
            let mut total = CheckReport::default();
            for link in img.chain() {
                match check(link) {
                    Ok(mut r) => {
                        if let (Some(p), true) = (link.path(), link.path() != Some(path)) {
                            for prob in &mut r.problems {
                                prob.what = format!("{} (in parent {})", prob.what, p.display());
                            }
                        }
                        total.problems.extend(r.problems);
                        total.allocated_blocks += r.allocated_blocks;
                        total.unreferenced_bytes += r.unreferenced_bytes;
                    }
                    Err(e) => total.add(0, "image", e.to_string()),
                }
            }
            total
        }
        Err(e) => {
            let mut r = CheckReport::default();
            let offset = match &e {
                Error::BadCookie { offset, .. } | Error::Checksum { offset, .. } => *offset,
                _ => 0,
            };
            r.add(offset, "image", format!("cannot be opened: {e}"));
            r
        }
    }
}
