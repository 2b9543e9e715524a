//! The OS-streaming domain of provision.
//!
//! What it is: the store of vDisks and their versions, devices and collections,
//! assignments and modes, personality and the audit log (an embedded SQLite database
//! in the store folder), and the rules that decide which version a device boots.
//! Write caches, sessions and the adapters to the protocol crates (NBD export provider,
//! TFTP file provider, ProxyDHCP policy) build on these.
//!
//! Rooms (see `DESIGN.md`): [`resolve`] decides what a device boots (pure), [`layout`]
//! names every file of the store folder, the store reaches its database through one
//! backend interface, and the adapters make each side effect of a protocol event an
//! explicit call.
//!
//! What it is not: a protocol implementation; the wire lives in `vhd`, `nbd-proto`,
//! `tftp` and `pxe`.
//!
//! ```
//! use provision_core::{DeviceType, Mode, Store};
//!
//! let store = Store::in_memory()?;
//! store.add_vdisk("win11", 64 << 30, "lab image", "win11/v0.vhd")?;
//! store.add_device("52:54:00:00:00:01".parse()?, "seat-01", None, DeviceType::Production)?;
//! store.assign("seat-01", "win11", Mode::Standard, None)?;
//!
//! store.add_version("win11", "win11/v1.vhd", "patch Tuesday")?; // maintenance
//! store.promote("win11")?; // test
//! store.promote("win11")?; // production: seat-01 boots version 1 at its next boot
//! let versions = store.versions("win11")?;
//! let boots = provision_core::resolve_version(&versions, DeviceType::Production, None);
//! assert_eq!(boots, Some(1));
//! store.rollback("win11")?; // and back to version 0
//! # Ok::<(), provision_core::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod adapters;
mod backup;
mod boot;
pub mod boot_files;
mod error;
mod file_lock;
#[doc(hidden)]
pub mod fuzzing;
mod images;
pub mod layout;
mod mac;
mod merge;
mod model;
pub mod resolve;
mod session;
mod store;

pub use backup::{BackupReport, backup_store};
pub use boot::{Boot, BootCause, Token};
pub use error::{Error, ErrorKind, Result};
pub use images::{
    Cleanup, clean_leftover_files, create_vdisk, import_vdisk, leftover_files, new_version,
    upload_file,
};
pub use layout::{CACHE_DIR, DATABASE_FILE, PRIVATE_DIR, UPLOAD_DIR};
pub use mac::Mac;
pub use merge::merge_version;
pub use model::{
    Assignment, AuditEntry, Collection, Device, DeviceType, Mode, VDisk, Version, VersionState,
};
pub use resolve::resolve_version;
pub use session::{
    NewBoot, Session, SessionInfo, SessionMode, SessionSettings, SessionStats, Sessions, Transport,
    Usage,
};
pub use store::collections::CollectionSettings;
pub use store::devices::{DeviceUpdate, PERSONALITY_LIMIT, SECRET_SHOWN};
pub use store::names::{MAX_NAME_LEN, NameOf, check_name};
pub use store::{AutoAddLimits, Store};
