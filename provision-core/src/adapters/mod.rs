//! Adapters from the domain to the protocol crates: vDisk sessions as NBD exports,
//! per-device boot files over TFTP.

pub mod nbd;
pub mod tftp;
