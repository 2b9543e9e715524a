//! The OS-streaming domain of provision.
//!
//! What it is: the store of vDisks and their versions, devices and collections,
//! assignments and modes, write caches, sessions and personality, plus the adapters that
//! turn them into an NBD export provider, a TFTP file provider and a ProxyDHCP policy.
//!
//! What it is not: a protocol implementation; the wire lives in `vhd`, `nbd-proto`,
//! `tftp` and `pxe`.
#![forbid(unsafe_code)]
