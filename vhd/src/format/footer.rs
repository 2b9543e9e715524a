//! The 512-byte hard disk footer (SPECS §2.1): parse, emit, checksum, CHS geometry.

use crate::error::{Error, Result};
use crate::format::bytes::{be32, be64, checksum, put32, put64};

/// Footer size in bytes.
pub const FOOTER_LEN: usize = 512;
/// The footer's cookie.
pub const FOOTER_COOKIE: &[u8; 8] = b"conectix";
/// `data offset` of a fixed disk (no dynamic header).
pub const NO_DATA_OFFSET: u64 = u64::MAX;
/// File format version 1.0.
pub const FORMAT_VERSION: u32 = 0x0001_0000;
/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01 00:00:00 UTC.
pub const VHD_EPOCH_UNIX: u64 = 946_684_800;
/// Largest virtual size this crate creates (2040 GiB, as qemu and Hyper-V).
pub const MAX_DISK_SIZE: u64 = 0xff00_0000 * 512;

/// Named field offsets inside the footer.
pub mod field {
    pub const COOKIE: usize = 0;
    pub const FEATURES: usize = 8;
    pub const FORMAT_VERSION: usize = 12;
    pub const DATA_OFFSET: usize = 16;
    pub const TIME_STAMP: usize = 24;
    pub const CREATOR_APP: usize = 28;
    pub const CREATOR_VERSION: usize = 32;
    pub const CREATOR_HOST_OS: usize = 36;
    pub const ORIGINAL_SIZE: usize = 40;
    pub const CURRENT_SIZE: usize = 48;
    pub const GEOMETRY: usize = 56;
    pub const DISK_TYPE: usize = 60;
    pub const CHECKSUM: usize = 64;
    pub const UNIQUE_ID: usize = 68;
    pub const SAVED_STATE: usize = 84;
}

/// The disk type field. Unknown values are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskType {
    /// 2: raw data followed by the footer.
    Fixed,
    /// 3: sparse blocks through a BAT.
    Dynamic,
    /// 4: sparse blocks over a parent image.
    Differencing,
    /// Anything else (0 none, 1/5/6 reserved, ...).
    Unknown(u32),
}

impl DiskType {
    /// The value stored on disk.
    pub fn to_u32(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
            DiskType::Unknown(n) => n,
        }
    }

    /// The type for a stored value.
    pub fn from_u32(n: u32) -> Self {
        match n {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => DiskType::Differencing,
            n => DiskType::Unknown(n),
        }
    }

    /// A lower-case name: fixed, dynamic, differencing, unknown(n).
    pub fn name(self) -> String {
        match self {
            DiskType::Fixed => "fixed".into(),
            DiskType::Dynamic => "dynamic".into(),
            DiskType::Differencing => "differencing".into(),
            DiskType::Unknown(n) => format!("unknown({n})"),
        }
    }
}

/// Cylinders, heads and sectors per track (SPECS §2.1, spec appendix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors_per_track: u8,
}

impl Geometry {
    /// The geometry the spec's algorithm gives for a disk of `size` bytes.
    pub fn for_size(size: u64) -> Self {
        let total = (size / 512).min(65535 * 16 * 255);
        let (spt, heads, cth);
        if total >= 65535 * 16 * 63 {
            spt = 255;
            heads = 16;
            cth = total / spt;
        } else {
            let mut s = 17;
            let mut c = total / s;
            let mut h = c.div_ceil(1024).max(4);
            if c >= h * 1024 || h > 16 {
                s = 31;
                h = 16;
                c = total / s;
            }
            if c >= h * 1024 {
                s = 63;
                h = 16;
                c = total / s;
            }
            spt = s;
            heads = h;
            cth = c;
        }
        Geometry {
            cylinders: (cth / heads) as u16,
            heads: heads as u8,
            sectors_per_track: spt as u8,
        }
    }

    /// Bytes addressed by this geometry.
    pub fn size(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors_per_track) * 512
    }

    /// The maximal geometry 65535/16/255, which readers take as "use the current size".
    pub fn is_max(self) -> bool {
        self.cylinders == 65535 && self.heads == 16 && self.sectors_per_track == 255
    }

    fn to_u32(self) -> u32 {
        (u32::from(self.cylinders) << 16)
            | (u32::from(self.heads) << 8)
            | u32::from(self.sectors_per_track)
    }

    fn from_u32(n: u32) -> Self {
        Geometry {
            cylinders: (n >> 16) as u16,
            heads: (n >> 8) as u8,
            sectors_per_track: n as u8,
        }
    }
}

/// The hard disk footer, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Feature bits (bit 0 temporary, bit 1 reserved and always set).
    pub features: u32,
    /// File format version, normally 0x00010000.
    pub format_version: u32,
    /// Absolute offset of the dynamic header, or [`NO_DATA_OFFSET`].
    pub data_offset: u64,
    /// Seconds since 2000-01-01 UTC.
    pub time_stamp: u32,
    /// Creator application, four bytes (`qemu`, `win `, `vpc `, ...).
    pub creator_app: [u8; 4],
    /// Creator version (major << 16 | minor).
    pub creator_version: u32,
    /// Creator host OS (`Wi2k`, `Mac `, or 0).
    pub creator_host_os: u32,
    /// Size at creation, bytes.
    pub original_size: u64,
    /// Current virtual size, bytes.
    pub current_size: u64,
    /// Stored geometry.
    pub geometry: Geometry,
    /// Disk type.
    pub disk_type: DiskType,
    /// Checksum as stored (ignored by [`Footer::emit`], which computes it).
    pub checksum: u32,
    /// Unique id of this image.
    pub unique_id: [u8; 16],
    /// Saved-state flag.
    pub saved_state: u8,
}

impl Footer {
    /// Parses a footer from at least 511 bytes (old Virtual PC wrote 511-byte footers;
    /// the missing last byte is a reserved zero). Checks the cookie only; see
    /// [`Footer::checksum_ok`] and [`Footer::validate`].
    pub fn parse(bytes: &[u8], offset: u64) -> Result<Self> {
        if bytes.len() < FOOTER_LEN - 1 {
            return Err(Error::Truncated {
                structure: "footer",
                need: FOOTER_LEN as u64,
                have: bytes.len() as u64,
            });
        }
        if &bytes[..8] != FOOTER_COOKIE {
            return Err(Error::BadCookie {
                structure: "footer",
                offset,
                found: String::from_utf8_lossy(&bytes[..8]).into_owned(),
                expected: "conectix",
            });
        }
        let mut creator_app = [0; 4];
        creator_app.copy_from_slice(&bytes[field::CREATOR_APP..field::CREATOR_APP + 4]);
        let mut unique_id = [0; 16];
        unique_id.copy_from_slice(&bytes[field::UNIQUE_ID..field::UNIQUE_ID + 16]);
        Ok(Footer {
            features: be32(bytes, field::FEATURES),
            format_version: be32(bytes, field::FORMAT_VERSION),
            data_offset: be64(bytes, field::DATA_OFFSET),
            time_stamp: be32(bytes, field::TIME_STAMP),
            creator_app,
            creator_version: be32(bytes, field::CREATOR_VERSION),
            creator_host_os: be32(bytes, field::CREATOR_HOST_OS),
            original_size: be64(bytes, field::ORIGINAL_SIZE),
            current_size: be64(bytes, field::CURRENT_SIZE),
            geometry: Geometry::from_u32(be32(bytes, field::GEOMETRY)),
            disk_type: DiskType::from_u32(be32(bytes, field::DISK_TYPE)),
            checksum: be32(bytes, field::CHECKSUM),
            unique_id,
            saved_state: bytes[field::SAVED_STATE],
        })
    }

    /// The checksum of `bytes` (a footer) with the checksum field taken as zero.
    pub fn compute_checksum(bytes: &[u8]) -> u32 {
        checksum(bytes, field::CHECKSUM)
    }

    /// True when the checksum stored in `bytes` matches them.
    pub fn checksum_ok(bytes: &[u8]) -> bool {
        bytes.len() > field::CHECKSUM + 4
            && Self::compute_checksum(bytes) == be32(bytes, field::CHECKSUM)
    }

    /// Checks the fields a reader relies on: a known disk type, a size that is a
    /// whole number of sectors, a data offset that fits a dynamic disk.
    pub fn validate(&self) -> Result<()> {
        match self.disk_type {
            DiskType::Fixed | DiskType::Dynamic | DiskType::Differencing => {}
            DiskType::Unknown(n) => {
                return Err(Error::Unsupported(format!("footer: disk type {n}")));
            }
        }
        if !self.current_size.is_multiple_of(512) {
            return Err(Error::invalid(
                "footer",
                "current size",
                format!("{} is not a multiple of 512", self.current_size),
            ));
        }
        if self.disk_type != DiskType::Fixed
            && (self.data_offset == NO_DATA_OFFSET || !self.data_offset.is_multiple_of(512))
        {
            return Err(Error::invalid(
                "footer",
                "data offset",
                format!(
                    "{:#x} for a {} disk",
                    self.data_offset,
                    self.disk_type.name()
                ),
            ));
        }
        Ok(())
    }

    /// Writes the footer into `out` (512 bytes) with a fresh checksum.
    pub fn emit(&self, out: &mut [u8; FOOTER_LEN]) {
        out.fill(0);
        out[..8].copy_from_slice(FOOTER_COOKIE);
        put32(out, field::FEATURES, self.features);
        put32(out, field::FORMAT_VERSION, self.format_version);
        put64(out, field::DATA_OFFSET, self.data_offset);
        put32(out, field::TIME_STAMP, self.time_stamp);
        out[field::CREATOR_APP..field::CREATOR_APP + 4].copy_from_slice(&self.creator_app);
        put32(out, field::CREATOR_VERSION, self.creator_version);
        put32(out, field::CREATOR_HOST_OS, self.creator_host_os);
        put64(out, field::ORIGINAL_SIZE, self.original_size);
        put64(out, field::CURRENT_SIZE, self.current_size);
        put32(out, field::GEOMETRY, self.geometry.to_u32());
        put32(out, field::DISK_TYPE, self.disk_type.to_u32());
        out[field::UNIQUE_ID..field::UNIQUE_ID + 16].copy_from_slice(&self.unique_id);
        out[field::SAVED_STATE] = self.saved_state;
        let sum = Self::compute_checksum(out);
        put32(out, field::CHECKSUM, sum);
    }

    /// The footer as 512 bytes.
    pub fn to_bytes(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0; FOOTER_LEN];
        self.emit(&mut out);
        out
    }

    /// The size implied by the stored geometry.
    pub fn chs_size(&self) -> u64 {
        self.geometry.size()
    }

    /// The creator application as text (lossy, NULs kept visible as `\0`).
    pub fn creator(&self) -> String {
        self.creator_app
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '?'
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_qemu_and_windows() {
        // The Windows fixture's 4 MiB disk stores 120/4/17 (SPECS §2.7).
        assert_eq!(
            Geometry::for_size(4 << 20),
            Geometry {
                cylinders: 120,
                heads: 4,
                sectors_per_track: 17
            }
        );
        assert!(Geometry::for_size(200 << 30).is_max());
    }

    #[test]
    fn emit_then_parse_round_trips_with_a_valid_checksum() {
        let f = Footer {
            features: 2,
            format_version: FORMAT_VERSION,
            data_offset: 512,
            time_stamp: 12345,
            creator_app: *b"win ",
            creator_version: 0x000a_0000,
            creator_host_os: 0x5769_326b,
            original_size: 1 << 20,
            current_size: 1 << 20,
            geometry: Geometry::for_size(1 << 20),
            disk_type: DiskType::Dynamic,
            checksum: 0,
            unique_id: [7; 16],
            saved_state: 0,
        };
        let bytes = f.to_bytes();
        assert!(Footer::checksum_ok(&bytes));
        let back = Footer::parse(&bytes, 0).unwrap();
        assert_eq!(
            back,
            Footer {
                checksum: back.checksum,
                ..f
            }
        );
        let mut bad = bytes;
        bad[100] ^= 1;
        assert!(!Footer::checksum_ok(&bad));
    }

    #[test]
    fn rejects_short_and_wrong_cookie() {
        assert!(matches!(
            Footer::parse(&[0; 100], 0),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            Footer::parse(&[0; 512], 0),
            Err(Error::BadCookie { .. })
        ));
    }
}
