//! Adapters from the domain to the protocol crates: vDisk sessions as NBD exports,
//! vDisk sessions as iSCSI targets (and any disk as a logical unit),
//! per-device boot files over TFTP, the devices' boot policy as a ProxyDHCP policy.

pub mod iscsi;
pub mod nbd;
pub mod pxe;
pub mod tftp;
