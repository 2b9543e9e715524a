//! The 1024-byte dynamic disk header (SPECS §2.2): parse, validate, emit.

use crate::error::{Error, Result};
use crate::format::bytes::{be32, be64, checksum, put32, put64};
use crate::format::locator::{LOCATOR_ENTRY_LEN, ParentLocator};

/// Header size in bytes.
pub const HEADER_LEN: usize = 1024;
/// The header's cookie.
pub const HEADER_COOKIE: &[u8; 8] = b"cxsparse";
/// Header version 1.0.
pub const HEADER_VERSION: u32 = 0x0001_0000;
/// The default block size, 2 MiB.
pub const DEFAULT_BLOCK_SIZE: u32 = 2 << 20;
/// Largest block size accepted (256 MiB; real writers use 512 KiB to 2 MiB).
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;
/// Number of parent locator slots.
pub const LOCATOR_SLOTS: usize = 8;

/// Named field offsets inside the header.
pub mod field {
    pub const COOKIE: usize = 0;
    pub const DATA_OFFSET: usize = 8;
    pub const TABLE_OFFSET: usize = 16;
    pub const HEADER_VERSION: usize = 24;
    pub const MAX_TABLE_ENTRIES: usize = 28;
    pub const BLOCK_SIZE: usize = 32;
    pub const CHECKSUM: usize = 36;
    pub const PARENT_UNIQUE_ID: usize = 40;
    pub const PARENT_TIME_STAMP: usize = 56;
    pub const PARENT_UNICODE_NAME: usize = 64;
    pub const PARENT_UNICODE_NAME_LEN: usize = 512;
    pub const PARENT_LOCATORS: usize = 576;
}

/// The dynamic disk header, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    /// Unused, normally all ones.
    pub data_offset: u64,
    /// Absolute offset of the BAT.
    pub table_offset: u64,
    /// Header version, normally 0x00010000.
    pub header_version: u32,
    /// Number of BAT entries.
    pub max_table_entries: u32,
    /// Data bytes per block (excluding the sector bitmap).
    pub block_size: u32,
    /// Checksum as stored (recomputed by [`DynamicHeader::emit`]).
    pub checksum: u32,
    /// The parent footer's unique id (differencing).
    pub parent_unique_id: [u8; 16],
    /// The parent's modification time stamp (0: not recorded).
    pub parent_time_stamp: u32,
    /// The parent's name as decoded from UTF-16BE (unpaired surrogates replaced).
    pub parent_unicode_name: String,
    /// The eight locator slots.
    pub locators: [ParentLocator; LOCATOR_SLOTS],
}

impl DynamicHeader {
    /// Parses a header from 1024 bytes; checks the cookie only (see
    /// [`DynamicHeader::checksum_ok`] and [`DynamicHeader::validate`]).
    pub fn parse(bytes: &[u8], offset: u64) -> Result<Self> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated {
                structure: "dynamic header",
                need: HEADER_LEN as u64,
                have: bytes.len() as u64,
            });
        }
        if &bytes[..8] != HEADER_COOKIE {
            return Err(Error::BadCookie {
                structure: "dynamic header",
                offset,
                found: String::from_utf8_lossy(&bytes[..8]).into_owned(),
                expected: "cxsparse",
            });
        }
        let mut parent_unique_id = [0; 16];
        parent_unique_id
            .copy_from_slice(&bytes[field::PARENT_UNIQUE_ID..field::PARENT_UNIQUE_ID + 16]);
        let name = &bytes[field::PARENT_UNICODE_NAME
            ..field::PARENT_UNICODE_NAME + field::PARENT_UNICODE_NAME_LEN];
        let units: Vec<u16> = name
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
        let mut locators = [ParentLocator::parse(&[0; LOCATOR_ENTRY_LEN]); LOCATOR_SLOTS];
        for (i, slot) in locators.iter_mut().enumerate() {
            let at = field::PARENT_LOCATORS + i * LOCATOR_ENTRY_LEN;
            let mut entry = [0; LOCATOR_ENTRY_LEN];
            entry.copy_from_slice(&bytes[at..at + LOCATOR_ENTRY_LEN]);
            *slot = ParentLocator::parse(&entry);
        }
        Ok(DynamicHeader {
            data_offset: be64(bytes, field::DATA_OFFSET),
            table_offset: be64(bytes, field::TABLE_OFFSET),
            header_version: be32(bytes, field::HEADER_VERSION),
            max_table_entries: be32(bytes, field::MAX_TABLE_ENTRIES),
            block_size: be32(bytes, field::BLOCK_SIZE),
            checksum: be32(bytes, field::CHECKSUM),
            parent_unique_id,
            parent_time_stamp: be32(bytes, field::PARENT_TIME_STAMP),
            parent_unicode_name: String::from_utf16_lossy(&units[..end]),
            locators,
        })
    }

    /// True when the checksum stored in `bytes` (1024) matches them.
    pub fn checksum_ok(bytes: &[u8]) -> bool {
        bytes.len() >= HEADER_LEN
            && checksum(&bytes[..HEADER_LEN], field::CHECKSUM) == be32(bytes, field::CHECKSUM)
    }

    /// Checks block size and table against each other and the virtual `disk_size`.
    pub fn validate(&self, disk_size: u64) -> Result<()> {
        let bs = self.block_size;
        if bs < 512 || !bs.is_power_of_two() || bs > MAX_BLOCK_SIZE {
            return Err(Error::invalid(
                "dynamic header",
                "block size",
                format!("{bs} is not a power of two between 512 and {MAX_BLOCK_SIZE}"),
            ));
        }
        if !self.table_offset.is_multiple_of(512) || self.table_offset == u64::MAX {
            return Err(Error::invalid(
                "dynamic header",
                "table offset",
                format!("{:#x} is not sector aligned", self.table_offset),
            ));
        }
        let needed = disk_size.div_ceil(u64::from(bs));
        if u64::from(self.max_table_entries) < needed {
            return Err(Error::invalid(
                "dynamic header",
                "max table entries",
                format!(
                    "{} entries of {bs} bytes cannot hold {disk_size} bytes",
                    self.max_table_entries
                ),
            ));
        }
        Ok(())
    }

    /// Bytes of the sector bitmap in front of each block (rounded up to a sector).
    pub fn bitmap_len(&self) -> u64 {
        (u64::from(self.block_size) / 512).div_ceil(8).div_ceil(512) * 512
    }

    /// Bytes of the BAT on disk (rounded up to a sector).
    pub fn bat_len(&self) -> u64 {
        (u64::from(self.max_table_entries) * 4).div_ceil(512) * 512
    }

    /// Writes the header into 1024 bytes with a fresh checksum.
    pub fn emit(&self, out: &mut [u8; HEADER_LEN]) {
        out.fill(0);
        out[..8].copy_from_slice(HEADER_COOKIE);
        put64(out, field::DATA_OFFSET, self.data_offset);
        put64(out, field::TABLE_OFFSET, self.table_offset);
        put32(out, field::HEADER_VERSION, self.header_version);
        put32(out, field::MAX_TABLE_ENTRIES, self.max_table_entries);
        put32(out, field::BLOCK_SIZE, self.block_size);
        out[field::PARENT_UNIQUE_ID..field::PARENT_UNIQUE_ID + 16]
            .copy_from_slice(&self.parent_unique_id);
        put32(out, field::PARENT_TIME_STAMP, self.parent_time_stamp);
        let name: Vec<u8> = self
            .parent_unicode_name
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        let n = name.len().min(field::PARENT_UNICODE_NAME_LEN);
        out[field::PARENT_UNICODE_NAME..field::PARENT_UNICODE_NAME + n].copy_from_slice(&name[..n]);
        for (i, loc) in self.locators.iter().enumerate() {
            let at = field::PARENT_LOCATORS + i * LOCATOR_ENTRY_LEN;
            let mut entry = [0; LOCATOR_ENTRY_LEN];
            loc.emit(&mut entry);
            out[at..at + LOCATOR_ENTRY_LEN].copy_from_slice(&entry);
        }
        let sum = checksum(out, field::CHECKSUM);
        put32(out, field::CHECKSUM, sum);
    }

    /// The header as 1024 bytes.
    pub fn to_bytes(&self) -> Box<[u8; HEADER_LEN]> {
        let mut out = Box::new([0; HEADER_LEN]);
        self.emit(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::locator::PlatformCode;

    #[test]
    fn round_trip_and_derived_lengths() {
        let mut h = DynamicHeader {
            data_offset: u64::MAX,
            table_offset: 0x600,
            header_version: HEADER_VERSION,
            max_table_entries: 3,
            block_size: DEFAULT_BLOCK_SIZE,
            checksum: 0,
            parent_unique_id: [1; 16],
            parent_time_stamp: 9,
            parent_unicode_name: "base.vhd".into(),
            locators: [ParentLocator::parse(&[0; 24]); LOCATOR_SLOTS],
        };
        h.locators[0] = ParentLocator {
            code: PlatformCode::W2ku,
            data_space: 512,
            data_length: 20,
            data_offset: 0x800,
        };
        let bytes = h.to_bytes();
        assert!(DynamicHeader::checksum_ok(&bytes[..]));
        let back = DynamicHeader::parse(&bytes[..], 512).unwrap();
        assert_eq!(
            back,
            DynamicHeader {
                checksum: back.checksum,
                ..h.clone()
            }
        );
        assert_eq!(h.bitmap_len(), 512);
        assert_eq!(h.bat_len(), 512);
        assert!(h.validate(3 * u64::from(DEFAULT_BLOCK_SIZE)).is_ok());
        assert!(h.validate(4 * u64::from(DEFAULT_BLOCK_SIZE)).is_err());
        h.block_size = 3000;
        assert!(h.validate(512).is_err());
    }
}
