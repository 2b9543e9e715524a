//! The on-disk format: the structures of a VHD file as bytes (SPECS §2), parsed from and
//! emitted to byte slices, and the reading of an image's structures from its storage.
//! Nothing here holds state across calls or writes to a file.

pub mod bat;
pub mod bitmap;
pub mod bytes;
pub mod footer;
pub mod header;
pub mod ids;
pub mod layout;
pub mod locator;
