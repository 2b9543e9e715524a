//! Virtual Hard Disk (VHD) images: the vDisk format of provision.
//!
//! What it is: a reader and writer of the Microsoft VHD format (fixed, dynamic and
//! differencing images), differencing chains, sparse write overlays, and whole-image
//! operations (convert, merge, check, allocation map). Parsing works over byte slices;
//! images are read and written through a small positional I/O trait.
//!
//! What it is not: a VHDX implementation, a file system, or a network server.
#![forbid(unsafe_code)]
