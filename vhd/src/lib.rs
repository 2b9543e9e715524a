//! Virtual Hard Disk (VHD) images: the vDisk format of provision.
//!
//! What it is: a reader and writer of the Microsoft VHD format (fixed, dynamic and
//! differencing images), differencing chains with parent resolution, sparse write
//! overlays, and whole-image operations (convert, merge, check, allocation map).
//! On-disk structures ([`Footer`], [`DynamicHeader`], the BAT, [`ParentLocator`]) parse
//! from and emit to byte slices; images are read and written through the small
//! positional [`Storage`] trait (files with pread/pwrite, read-only memory maps, memory),
//! and every virtual disk, whatever it is made of, is a [`Disk`].
//!
//! What it is not: a VHDX implementation, a file system, or a network server (the NBD
//! server lives in `nbd-proto`, the vDisk domain in `provision-core`).
//!
//! # Example: a dynamic image in memory
//!
//! ```
//! use std::sync::Arc;
//! use vhd::{CreateOptions, Disk, ExtentState, Image, MemStorage};
//!
//! // Create a 4 MiB dynamic image in memory and write across a block boundary.
//! let storage = Arc::new(MemStorage::new(Vec::new()));
//! let image = CreateOptions::dynamic(4 << 20).create_on(storage.clone(), None)?;
//! image.write_at(b"hello, vDisk", (2 << 20) - 5)?;
//! image.flush()?;
//!
//! // Re-open the same bytes and read them back; untouched space reads as zeros.
//! let bytes = storage.to_vec();
//! let again = Image::from_bytes(bytes)?;
//! let mut buf = [0u8; 12];
//! again.read_at(&mut buf, (2 << 20) - 5)?;
//! assert_eq!(&buf, b"hello, vDisk");
//! let map = again.allocation(0, 4 << 20)?;
//! assert_eq!(map[0].state, ExtentState::Data); // block 0 is allocated
//! # Ok::<(), vhd::Error>(())
//! ```
//!
//! # Layout (SPECS §2)
//!
//! ```text
//! fixed:            [ data .............................. ][ footer ]
//! dynamic/differ.:  [ footer copy ][ header ][ locators ][ BAT ][ bitmap | block ]...[ footer ]
//! ```
#![deny(unsafe_code)]

mod engine;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod tools;

pub use engine::chain::{
    MAX_CHAIN_DEPTH, OpenOptions, ParentRequest, ParentResolver, decode_locators, looks_like_vhd,
    open_disk,
};
pub use engine::disk::{Disk, Extent, ExtentState, Located, RawDisk, check_range, push_located};
pub use engine::image::{ChecksumPolicy, FooterSource, Image, SizePolicy};
pub use engine::overlay::{CHUNK as OVERLAY_CHUNK, Overlay, OverlayLimits, RamBudget};
pub use engine::storage::{FileStorage, MemStorage, MmapStorage, Storage};
pub use error::{Error, ErrorKind, Result};
pub use format::bat::{UNUSED as BAT_UNUSED, emit_bat, parse_bat};
pub use format::footer::{
    DiskType, FOOTER_LEN, Footer, Geometry, MAX_DISK_SIZE, NO_DATA_OFFSET, VHD_EPOCH_UNIX,
};
pub use format::header::{DEFAULT_BLOCK_SIZE, DynamicHeader, HEADER_LEN};
pub use format::ids::{format_uuid, new_uuid};
pub use format::locator::{ParentLocator, PlatformCode};
pub use tools::check::{CheckReport, Problem, check, check_file};
pub use tools::convert::{Progress, Target, convert, convert_file, merge, save_overlay};
pub use tools::create::{
    CreateOptions, ParentLink, create_differencing, create_differencing_on, parent_link,
};
pub use tools::map::{Map, map_file};

/// Named field offsets of the on-disk structures.
pub mod fields {
    pub use crate::format::footer::field as footer;
    pub use crate::format::header::field as header;
    pub use crate::format::locator::field as locator;
}
