//! Parent locator entries of the dynamic header (SPECS §2.2) and the decoding of
//! their platform data (W2ku/W2ru: UTF-16LE paths; MacX: UTF-8 URL).

use crate::format::bytes::{be32, be64, put32, put64};

/// Size of one locator entry.
pub const LOCATOR_ENTRY_LEN: usize = 24;

/// Named field offsets inside a locator entry.
pub mod field {
    pub const PLATFORM_CODE: usize = 0;
    pub const DATA_SPACE: usize = 4;
    pub const DATA_LENGTH: usize = 8;
    pub const DATA_OFFSET: usize = 16;
}

/// The platform code of a locator. Unknown codes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlatformCode {
    /// 0: empty slot.
    None,
    /// `Wi2r`: deprecated relative ANSI path.
    Wi2r,
    /// `Wi2k`: deprecated absolute ANSI path.
    Wi2k,
    /// `W2ru`: relative path, UTF-16LE.
    W2ru,
    /// `W2ku`: absolute path, UTF-16LE.
    W2ku,
    /// `Mac `: Mac OS alias blob.
    Mac,
    /// `MacX`: file URL, UTF-8.
    MacX,
    /// Anything else.
    Unknown(u32),
}

impl PlatformCode {
    /// The stored value.
    pub fn to_u32(self) -> u32 {
        match self {
            PlatformCode::None => 0,
            PlatformCode::Wi2r => 0x5769_3272,
            PlatformCode::Wi2k => 0x5769_326b,
            PlatformCode::W2ru => 0x5732_7275,
            PlatformCode::W2ku => 0x5732_6b75,
            PlatformCode::Mac => 0x4d61_6320,
            PlatformCode::MacX => 0x4d61_6358,
            PlatformCode::Unknown(n) => n,
        }
    }

    /// The code for a stored value.
    pub fn from_u32(n: u32) -> Self {
        [
            PlatformCode::None,
            PlatformCode::Wi2r,
            PlatformCode::Wi2k,
            PlatformCode::W2ru,
            PlatformCode::W2ku,
            PlatformCode::Mac,
            PlatformCode::MacX,
        ]
        .into_iter()
        .find(|c| c.to_u32() == n)
        .unwrap_or(PlatformCode::Unknown(n))
    }

    /// The four-character name (`W2ku`, ...), or the number for unknown codes.
    pub fn name(self) -> String {
        match self {
            PlatformCode::None => "none".into(),
            PlatformCode::Unknown(n) => format!("{n:#010x}"),
            c => String::from_utf8_lossy(&c.to_u32().to_be_bytes()).into_owned(),
        }
    }
}

/// One parent locator entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentLocator {
    /// Platform code.
    pub code: PlatformCode,
    /// Space reserved for the data (bytes as written by Windows and us; some writers
    /// store sectors).
    pub data_space: u32,
    /// Length of the data in bytes.
    pub data_length: u32,
    /// Absolute file offset of the data.
    pub data_offset: u64,
}

impl ParentLocator {
    /// Parses an entry from 24 bytes.
    pub fn parse(b: &[u8; LOCATOR_ENTRY_LEN]) -> Self {
        ParentLocator {
            code: PlatformCode::from_u32(be32(b, field::PLATFORM_CODE)),
            data_space: be32(b, field::DATA_SPACE),
            data_length: be32(b, field::DATA_LENGTH),
            data_offset: be64(b, field::DATA_OFFSET),
        }
    }

    /// Writes the entry into 24 bytes.
    pub fn emit(&self, out: &mut [u8; LOCATOR_ENTRY_LEN]) {
        out.fill(0);
        put32(out, field::PLATFORM_CODE, self.code.to_u32());
        put32(out, field::DATA_SPACE, self.data_space);
        put32(out, field::DATA_LENGTH, self.data_length);
        put64(out, field::DATA_OFFSET, self.data_offset);
    }

    /// True for an empty slot.
    pub fn is_empty(&self) -> bool {
        self.code == PlatformCode::None
    }

    /// The bytes this entry occupies in the file: at least its data length, and its data
    /// space when that is given in bytes (taken as sectors when small, as the spec says).
    pub fn reserved_bytes(&self) -> u64 {
        let space = u64::from(self.data_space);
        let space = if space < 512 { space * 512 } else { space };
        space.max(u64::from(self.data_length))
    }

    /// Decodes this entry's data into a path or URL, or `None` for codes without a text
    /// form (Mac alias) or undecodable data.
    pub fn decode(&self, data: &[u8]) -> Option<String> {
        let text = match self.code {
            PlatformCode::W2ku | PlatformCode::W2ru => {
                let units: Vec<u16> = data
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16_lossy(&units)
            }
            PlatformCode::Wi2k | PlatformCode::Wi2r | PlatformCode::MacX => {
                String::from_utf8_lossy(data).into_owned()
            }
            _ => return None,
        };
        let text = text.trim_end_matches('\0').to_owned();
        (!text.is_empty()).then_some(text)
    }
}

/// Encodes a path as W2ku/W2ru data (UTF-16LE, no terminator).
pub fn encode_utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}
