//! Adapters from the domain to the protocol crates: vDisk sessions as NBD exports.

pub mod nbd;
