//! The block allocation table (SPECS §2.3): u32 big-endian sector numbers,
//! `0xFFFFFFFF` for blocks not allocated.

use crate::error::{Error, Result};

/// A BAT entry meaning "block not allocated".
pub const UNUSED: u32 = u32::MAX;

/// Decodes `entries` BAT entries from `bytes`.
pub fn parse_bat(bytes: &[u8], entries: u32) -> Result<Vec<u32>> {
    let need = u64::from(entries) * 4;
    if (bytes.len() as u64) < need {
        return Err(Error::Truncated {
            structure: "BAT",
            need,
            have: bytes.len() as u64,
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .take(entries as usize)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Encodes BAT entries, padding with `UNUSED` up to a whole sector.
pub fn emit_bat(entries: &[u32]) -> Vec<u8> {
    let len = (entries.len() * 4).div_ceil(512) * 512;
    let mut out = vec![0xff; len];
    for (i, e) in entries.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&e.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bat_round_trip() {
        let bytes = emit_bat(&[3, UNUSED, 0x1000]);
        assert_eq!(bytes.len(), 512);
        assert_eq!(parse_bat(&bytes, 3).unwrap(), vec![3, UNUSED, 0x1000]);
        assert!(parse_bat(&bytes[..8], 3).is_err());
    }
}
