//! Adapters from the domain to the protocol crates: vDisk sessions as NBD exports,
//! a disk as an iSCSI logical unit,
//! per-device boot files over TFTP, the devices' boot policy as a ProxyDHCP policy.

pub mod iscsi;
pub mod nbd;
pub mod pxe;
pub mod tftp;
