//! The domain's records and enumerations, as DESIGN.md names them.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind};
use crate::mac::Mac;

/// Defines an enumeration stored as lowercase text in the database and on the CLI.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in order.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The value's name in the database, the CLI and the API.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(text: &str) -> Result<Self, Error> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(Error::new(
                        ErrorKind::Invalid,
                        format!(
                            "`{text}` is not a {}; expected one of: {}",
                            stringify!($name),
                            [$($text),+].join(", ")
                        ),
                    )),
                }
            }
        }
    };
}
pub(crate) use text_enum;

text_enum! {
    /// Which version of a vDisk a device boots.
    DeviceType {
        /// Boots the production version.
        Production = "production",
        /// Boots the newest version under test (or production if none is).
        Test = "test",
        /// Boots the newest version read-write, one device at a time.
        Maintenance = "maintenance",
    }
}

text_enum! {
    /// The life cycle of a version: maintenance -> test -> production -> superseded.
    VersionState {
        /// Being changed by a maintenance device; not yet bootable by others.
        Maintenance = "maintenance",
        /// Booted by test devices.
        Test = "test",
        /// Booted by production devices; at most one version of a vDisk.
        Production = "production",
        /// A former production version, kept for rollback.
        Superseded = "superseded",
    }
}

text_enum! {
    /// How a device uses an assigned vDisk.
    Mode {
        /// Shared read-only chain plus a per-boot write cache, dropped at the next boot.
        Standard = "standard",
        /// A persistent per-device differencing disk over the assigned version.
        Private = "private",
    }
}

/// A vDisk: an image with versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VDisk {
    /// Database id.
    pub id: i64,
    /// Unique name, used in export names and the CLI.
    pub name: String,
    /// Virtual size in bytes (the same for every version).
    pub size: u64,
    /// Free text for operators.
    pub description: String,
}

/// One version of a vDisk: version 0 is the base, N+1 a differencing image over N.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The vDisk it belongs to.
    pub vdisk_id: i64,
    /// 0 for the base.
    pub number: u32,
    /// The image file, relative to the store's folder.
    pub file: String,
    /// Where the version stands in its life cycle.
    pub state: VersionState,
    /// What changed in this version, for operators.
    pub note: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: i64,
}

/// A device, identified by its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Database id.
    pub id: i64,
    /// Its Ethernet address.
    pub mac: Mac,
    /// Unique name (also the default hostname).
    pub name: String,
    /// The collection it belongs to, if any.
    pub collection: Option<String>,
    /// Which versions it boots.
    pub device_type: DeviceType,
    /// A disabled device is refused at boot.
    pub enabled: bool,
}

/// A vDisk assigned to a device; a device's assignments are ordered, the first being
/// the default (more than one gives a boot menu).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The vDisk's name.
    pub vdisk: String,
    /// Standard or private.
    pub mode: Mode,
    /// A version the device is pinned to, overriding its device type.
    pub pinned_version: Option<u32>,
}

/// A group of devices with defaults; the auto-add collection receives unknown devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    /// Database id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Unknown MACs that boot are added to this collection (at most one has it on).
    pub auto_add: bool,
    /// Device type given to devices added to it.
    pub default_device_type: DeviceType,
    /// vDisk assigned to devices auto-added to it.
    pub default_vdisk: Option<String>,
    /// Mode of that default assignment.
    pub default_mode: Mode,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its number in the log: later lines have larger ones.
    pub id: i64,
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// Who made the change.
    pub actor: String,
    /// What was done (`device.add`, `version.promote`, ...).
    pub action: String,
    /// The object changed.
    pub subject: String,
    /// Details, human readable.
    pub detail: String,
}
