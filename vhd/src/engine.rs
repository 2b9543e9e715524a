//! The image engine: the [`Disk`](disk::Disk) trait and the storages under images; an
//! open image (fixed, dynamic or differencing) with its parents attached, reads through
//! the chain and the write path; opening chains from files; RAM write overlays.

pub mod chain;
pub mod disk;
pub mod image;
pub mod overlay;
pub mod storage;
