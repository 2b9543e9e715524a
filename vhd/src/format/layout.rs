//! Finding and validating an image's structures in its storage: which footer to trust
//! (trailing, 511-byte, or the copy at offset 0), the dynamic header, and the BAT with
//! its entries checked against the file (SPECS §2.1–2.3).

use crate::engine::storage::Storage;
use crate::error::{Error, Result};
use crate::format::bat::{UNUSED, parse_bat};
use crate::format::footer::{DiskType, FOOTER_COOKIE, FOOTER_LEN, Footer};
use crate::format::header::{DynamicHeader, HEADER_LEN};

/// How strictly checksums are enforced when opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumPolicy {
    /// Prefer a footer with a valid checksum (trailing, then the copy at offset 0);
    /// when none is valid, use the trailing one and record a warning. Bad dynamic
    /// header checksums are warnings too. (What libvhdi does; the dfvfs fixtures need it.)
    #[default]
    Lenient,
    /// Refuse any footer or header whose checksum is wrong, unless a valid footer copy
    /// exists.
    Strict,
}

/// Which size the virtual disk has (SPECS §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SizePolicy {
    /// The footer's current size (Windows, VirtualBox, qemu >= 10 for most creators).
    #[default]
    CurrentSize,
    /// The size of the CHS geometry, unless it is the maximal 65535/16/255 (what
    /// Virtual PC and old qemu do).
    Chs,
}

/// Where the footer in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FooterSource {
    /// The last 512 bytes of the file.
    Trailing,
    /// The last 511 bytes (old Virtual PC).
    Trailing511,
    /// The copy at offset 0 of a dynamic or differencing image.
    CopyAtZero,
}

/// The structures of one image as found in its storage.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The footer in effect.
    pub footer: Footer,
    /// Where it came from.
    pub footer_source: FooterSource,
    /// File offset of the trailing footer (where it is, or should be).
    pub footer_offset: u64,
    /// Virtual size per the size policy.
    pub size: u64,
    /// Dynamic header and BAT of dynamic and differencing images.
    pub sparse: Option<(DynamicHeader, Vec<u32>)>,
    /// What was odd but tolerated.
    pub warnings: Vec<String>,
}

fn read(storage: &dyn Storage, buf: &mut [u8], offset: u64, what: &str) -> Result<()> {
    storage
        .read_at(buf, offset)
        .map_err(|e| Error::io(format!("reading {what} at offset {offset}"), e))
}

/// Reads and checks the structures of an image.
pub fn read_layout(
    storage: &dyn Storage,
    checksums: ChecksumPolicy,
    size_policy: SizePolicy,
) -> Result<Layout> {
    let file_len = storage.len().map_err(|e| Error::io("image length", e))?;
    if file_len < FOOTER_LEN as u64 - 1 {
        return Err(Error::Truncated {
            structure: "image file",
            need: FOOTER_LEN as u64,
            have: file_len,
        });
    }
    let mut warnings = Vec::new();
    let mut candidates: Vec<(Vec<u8>, FooterSource, u64)> = Vec::new();
    if file_len >= FOOTER_LEN as u64 {
        let mut b = vec![0; FOOTER_LEN];
        read(storage, &mut b, file_len - FOOTER_LEN as u64, "footer")?;
        if &b[..8] == FOOTER_COOKIE {
            candidates.push((b, FooterSource::Trailing, file_len - FOOTER_LEN as u64));
        } else {
            let mut c = vec![0; FOOTER_LEN - 1];
            read(
                storage,
                &mut c,
                file_len - (FOOTER_LEN as u64 - 1),
                "footer",
            )?;
            if &c[..8] == FOOTER_COOKIE {
                c.push(0);
                candidates.push((
                    c,
                    FooterSource::Trailing511,
                    file_len - (FOOTER_LEN as u64 - 1),
                ));
            }
        }
        let mut z = vec![0; FOOTER_LEN];
        read(storage, &mut z, 0, "footer copy")?;
        if &z[..8] == FOOTER_COOKIE
            && Footer::parse(&z, 0).is_ok_and(|f| f.disk_type != DiskType::Fixed)
            && file_len >= 2 * FOOTER_LEN as u64
        {
            candidates.push((z, FooterSource::CopyAtZero, 0));
        }
    }
    if candidates.is_empty() {
        let mut b = [0u8; 8];
        read(storage, &mut b, file_len - 8.min(file_len), "footer cookie")?;
        return Err(Error::BadCookie {
            structure: "footer",
            offset: file_len.saturating_sub(FOOTER_LEN as u64),
            found: String::from_utf8_lossy(&b).into_owned(),
            expected: "conectix",
        });
    }
    let chosen = candidates
        .iter()
        .position(|(b, _, _)| Footer::checksum_ok(b));
    let index = match (chosen, checksums) {
        (Some(i), _) => i,
        (None, ChecksumPolicy::Strict) => {
            let (b, _, off) = &candidates[0];
            return Err(Error::Checksum {
                structure: "footer",
                offset: *off,
                stored: Footer::parse(b, *off)?.checksum,
                computed: Footer::compute_checksum(b),
            });
        }
        (None, ChecksumPolicy::Lenient) => {
            warnings.push(format!(
                "footer at offset {}: checksum wrong, used anyway (lenient)",
                candidates[0].2
            ));
            0
        }
    };
    let (bytes, source, at) = &candidates[index];
    let footer = Footer::parse(bytes, *at)?;
    if *source == FooterSource::CopyAtZero {
        warnings.push(format!(
            "no valid footer at the end (offset {}); using the copy at offset 0",
            file_len - FOOTER_LEN as u64
        ));
    }
    footer.validate()?;
    let footer_offset = match source {
        FooterSource::Trailing511 => file_len - (FOOTER_LEN as u64 - 1),
        _ => file_len - FOOTER_LEN as u64,
    };
    let size = match size_policy {
        SizePolicy::Chs if !footer.geometry.is_max() => footer.chs_size(),
        _ => footer.current_size,
    };
    if footer.current_size != footer.chs_size() && !footer.geometry.is_max() {
        tracing::debug!(
            current = footer.current_size,
            chs = footer.chs_size(),
            "current size differs from CHS size"
        );
    }
    let sparse = match footer.disk_type {
        DiskType::Fixed => {
            if size > footer_offset {
                return Err(Error::Truncated {
                    structure: "fixed image data",
                    need: size + FOOTER_LEN as u64,
                    have: file_len,
                });
            }
            None
        }
        _ => Some(read_sparse(
            storage,
            &footer,
            size,
            file_len,
            checksums,
            &mut warnings,
        )?),
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(Layout {
        footer,
        footer_source: *source,
        footer_offset,
        size,
        sparse,
        warnings,
    })
}

fn read_sparse(
    storage: &dyn Storage,
    footer: &Footer,
    size: u64,
    file_len: u64,
    checksums: ChecksumPolicy,
    warnings: &mut Vec<String>,
) -> Result<(DynamicHeader, Vec<u32>)> {
    let at = footer.data_offset;
    let end = at.checked_add(HEADER_LEN as u64).filter(|&e| e <= file_len);
    if end.is_none() {
        return Err(Error::Truncated {
            structure: "dynamic header",
            need: at.saturating_add(HEADER_LEN as u64),
            have: file_len,
        });
    }
    let mut hb = vec![0; HEADER_LEN];
    read(storage, &mut hb, at, "dynamic header")?;
    let header = DynamicHeader::parse(&hb, at)?;
    if !DynamicHeader::checksum_ok(&hb) {
        let computed = crate::format::bytes::checksum(&hb, crate::format::header::field::CHECKSUM);
        if checksums == ChecksumPolicy::Strict {
            return Err(Error::Checksum {
                structure: "dynamic header",
                offset: at,
                stored: header.checksum,
                computed,
            });
        }
        warnings.push(format!(
            "dynamic header at offset {at}: checksum wrong, used anyway (lenient)"
        ));
    }
    header.validate(size)?;
    let bat_bytes = u64::from(header.max_table_entries) * 4;
    let bat_end = header
        .table_offset
        .checked_add(bat_bytes)
        .filter(|&e| e <= file_len);
    if bat_end.is_none() {
        return Err(Error::Invalid {
            structure: "BAT",
            field: "table offset",
            reason: format!(
                "{} entries at offset {} run past the end of the {file_len}-byte file",
                header.max_table_entries, header.table_offset
            ),
        });
    }
    let mut raw = vec![0; bat_bytes as usize];
    read(storage, &mut raw, header.table_offset, "BAT")?;
    let bat = parse_bat(&raw, header.max_table_entries)?;
    check_blocks(&header, &bat, file_len, at)?;
    Ok((header, bat))
}

/// Checks that every allocated block lies inside the file, after the metadata, and
/// overlaps no other block.
fn check_blocks(header: &DynamicHeader, bat: &[u32], file_len: u64, header_at: u64) -> Result<()> {
    let total = header.bitmap_len() + u64::from(header.block_size);
    let meta_end = (header_at + HEADER_LEN as u64).max(header.table_offset + header.bat_len());
    let mut starts: Vec<(u64, usize)> = Vec::new();
    for (i, &e) in bat.iter().enumerate() {
        if e == UNUSED {
            continue;
        }
        let start = u64::from(e) * 512;
        if start + total > file_len {
            return Err(Error::Invalid {
                structure: "BAT",
                field: "entry",
                reason: format!(
                    "entry {i}: block at offset {start} ({total} bytes) runs past the end of the {file_len}-byte file"
                ),
            });
        }
        if start < meta_end {
            return Err(Error::Invalid {
                structure: "BAT",
                field: "entry",
                reason: format!(
                    "entry {i}: block at offset {start} overlaps the header or BAT (which end at {meta_end})"
                ),
            });
        }
        starts.push((start, i));
    }
    starts.sort_unstable();
    for w in starts.windows(2) {
        if w[0].0 + total > w[1].0 {
            return Err(Error::Invalid {
                structure: "BAT",
                field: "entry",
                reason: format!(
                    "entry {}: block at offset {} overlaps entry {} at offset {}",
                    w[1].1, w[1].0, w[0].1, w[0].0
                ),
            });
        }
    }
    Ok(())
}
