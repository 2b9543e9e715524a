//! The `provision` command line: its subcommands and their arguments. `provision`
//! runs them on a store folder ([`super::local`]) or through provisiond's API
//! ([`super::remote`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use provision_core::{DeviceType, Error, Mac, Mode};

use crate::resources;

/// One command line without the global options: what `provision --api` sends to
/// provisiond, which parses it exactly as `provision` does.
#[derive(Debug, Parser)]
#[command(name = "provision", no_binary_name = true, disable_version_flag = true)]
pub struct Line {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// vDisks: images that devices boot, with versions.
    #[command(subcommand)]
    Vdisk(VdiskCommand),
    /// Versions of a vDisk: new, promote, rollback, merge.
    #[command(subcommand)]
    Version(VersionCommand),
    /// Devices, identified by MAC.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Assign a vDisk to a device (the first assigned is its default; several give a
    /// boot menu), or change an assignment's mode or position.
    Assign {
        /// Device MAC or name.
        device: String,
        /// vDisk name.
        vdisk: String,
        /// standard: shared vDisk plus a per-boot write cache; private: a persistent
        /// disk of the device's own.
        #[arg(long, default_value = "standard", value_parser = parse::<Mode>)]
        mode: Mode,
        /// Position in the device's list (0 = default); appended when absent.
        #[arg(long)]
        position: Option<usize>,
    },
    /// Remove a vDisk from a device.
    Unassign {
        /// Device MAC or name.
        device: String,
        /// vDisk name.
        vdisk: String,
    },
    /// Pin a device's vDisk to one version, or unpin it (no VERSION).
    Pin {
        /// Device MAC or name.
        device: String,
        /// vDisk name.
        vdisk: String,
        /// Version number.
        version: Option<u32>,
    },
    /// Collections: groups of devices with defaults, and auto-add of unknown devices.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Per-device personality (hostname and other key/values).
    #[command(subcommand)]
    Personality(PersonalityCommand),
    /// The store itself: find (and remove) files left by interrupted operations.
    #[command(subcommand)]
    Store(StoreCommand),
    /// The newest entries of the audit log.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Entries older than this one (the ID column: the next page).
        #[arg(long)]
        before: Option<i64>,
    },
    /// Sessions of the running provisiond (needs --api).
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// The running provisiond: services, sessions, write caches (needs --api).
    Status,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// The open sessions, with their traffic and write-cache use.
    List,
    /// Start a device's next boot now: end its current boot's sessions (their
    /// connections are closed), drop their write caches, and print the new boot's token.
    Reset {
        /// Device MAC or name.
        device: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create an empty store in the folder given with --store (one that exists is left
    /// as it is). Other commands refuse a folder without a store, except those that add
    /// the first things to it (vdisk create/import, device add, collection add).
    Init,
    /// List files that no version names (left by an import, version or merge that was
    /// interrupted); exits 4 when there are any.
    Check {
        /// Delete them.
        #[arg(long)]
        clean: bool,
    },
    /// Copy the store (with --store, on the machine that holds it; provisiond may keep
    /// serving) into a new folder that opens as a store: the database as of one moment
    /// (SQLite's online copy), every version file and every private disk it names.
    /// Write caches are left out. A version in maintenance or a private disk that keeps
    /// changing while it is copied is left out and named (exit 4): back it up when its
    /// device is off.
    Backup {
        /// The new (or empty) folder.
        dest: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum VdiskCommand {
    /// Import a raw image or a VHD (a chain included) as a new vDisk. With --api, FILE
    /// names a file in provisiond's import folder, or with --upload a local file sent
    /// to provisiond.
    Import {
        /// Name of the new vDisk.
        name: String,
        /// The image file.
        file: PathBuf,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Send the local FILE to provisiond (with --api) instead of naming one in its
        /// import folder.
        #[arg(long)]
        upload: bool,
    },
    /// Create a new, empty vDisk.
    Create {
        /// Name of the new vDisk.
        name: String,
        /// Size: 512, 64K, 100M, 20G.
        #[arg(long, value_parser = crate::parse_size)]
        size: u64,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List vDisks.
    List,
    /// Show a vDisk and its versions.
    Show {
        /// vDisk name.
        name: String,
    },
    /// Remove a vDisk that no device has assigned (its files are kept).
    Remove {
        /// vDisk name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum VersionCommand {
    /// Create version N+1 (a differencing image over N) for maintenance devices.
    New {
        /// vDisk name.
        vdisk: String,
        /// What this version changes.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List a vDisk's versions.
    List {
        /// vDisk name.
        vdisk: String,
    },
    /// Move the newest version on: maintenance -> test -> production.
    Promote {
        /// vDisk name.
        vdisk: String,
    },
    /// Make the previous production version current again.
    Rollback {
        /// vDisk name.
        vdisk: String,
    },
    /// Flatten a version's chain into a new base, in place (running sessions go on).
    Merge {
        /// vDisk name.
        vdisk: String,
        /// Version number.
        version: u32,
    },
    /// Remove the newest version (never the base or the production version).
    Remove {
        /// vDisk name.
        vdisk: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Add a device.
    Add {
        /// Its MAC address.
        #[arg(value_parser = parse::<Mac>)]
        mac: Mac,
        /// Its unique name.
        name: String,
        /// Collection it belongs to.
        #[arg(long)]
        collection: Option<String>,
        /// production, test or maintenance.
        #[arg(long = "type", default_value = "production", value_parser = parse::<DeviceType>)]
        device_type: DeviceType,
    },
    /// List devices.
    List,
    /// Show a device, its vDisks and personality.
    Show {
        /// MAC or name.
        device: String,
    },
    /// Change a device: only what is given changes.
    Set(DeviceSetArgs),
    /// Remove a device, its assignments and personality.
    Remove {
        /// MAC or name.
        device: String,
    },
    /// Show the secret a hypervisor attaches the device's disks with, as the last
    /// part of the NBD export name (`nbd://SERVER/<mac>/<vdisk>/<secret>`); the first
    /// call makes one. Keep it like a password.
    AttachSecret {
        /// MAC or name.
        device: String,
        /// Make a new secret; the old one stops working (open sessions stay).
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct DeviceSetArgs {
    /// MAC or name.
    pub device: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New collection.
    #[arg(long, conflicts_with = "no_collection")]
    pub collection: Option<String>,
    /// Take it out of its collection.
    #[arg(long)]
    pub no_collection: bool,
    /// production, test or maintenance.
    #[arg(long = "type", value_parser = parse::<DeviceType>)]
    pub device_type: Option<DeviceType>,
    /// Enable the device.
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Disable the device: it is refused at boot.
    #[arg(long)]
    pub disable: bool,
}

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Add a collection.
    Add(CollectionArgs),
    /// Change a collection's settings: only those given change.
    Set(CollectionSetArgs),
    /// List collections.
    List,
    /// Remove a collection; its devices stay, in no collection.
    Remove {
        /// Collection name.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct CollectionArgs {
    /// Collection name.
    pub name: String,
    /// Add unknown devices that boot to this collection (only one collection can).
    #[arg(long)]
    pub auto_add: bool,
    /// Device type given to its devices.
    #[arg(long = "type", default_value = "production", value_parser = parse::<DeviceType>)]
    pub device_type: DeviceType,
    /// vDisk assigned to auto-added devices.
    #[arg(long)]
    pub vdisk: Option<String>,
    /// Mode of that assignment.
    #[arg(long, default_value = "standard", value_parser = parse::<Mode>)]
    pub mode: Mode,
}

#[derive(Debug, clap::Args)]
pub struct CollectionSetArgs {
    /// Collection name.
    pub name: String,
    /// Add unknown devices that boot to this collection (turns it off on the others).
    #[arg(long, conflicts_with = "no_auto_add")]
    pub auto_add: bool,
    /// Stop adding unknown devices to it.
    #[arg(long)]
    pub no_auto_add: bool,
    /// Device type given to its devices.
    #[arg(long = "type", value_parser = parse::<DeviceType>)]
    pub device_type: Option<DeviceType>,
    /// vDisk assigned to auto-added devices.
    #[arg(long, conflicts_with = "no_vdisk")]
    pub vdisk: Option<String>,
    /// Assign no vDisk to auto-added devices.
    #[arg(long)]
    pub no_vdisk: bool,
    /// Mode of that assignment.
    #[arg(long, value_parser = parse::<Mode>)]
    pub mode: Option<Mode>,
}

#[derive(Debug, Subcommand)]
pub enum PersonalityCommand {
    /// Set values: KEY=VALUE ...
    Set {
        /// MAC or name.
        device: String,
        /// KEY=VALUE pairs.
        #[arg(required = true, value_parser = parse_pair)]
        values: Vec<(String, String)>,
        /// The values are secrets (passwords, keys): served to the device's boot only,
        /// never shown in listings or the audit log.
        #[arg(long)]
        secret: bool,
    },
    /// Remove keys.
    Unset {
        /// MAC or name.
        device: String,
        /// Keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Show a device's personality.
    Get {
        /// MAC or name.
        device: String,
    },
}

fn parse<T: std::str::FromStr<Err = Error>>(text: &str) -> std::result::Result<T, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

fn parse_pair(text: &str) -> std::result::Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

impl Command {
    /// True for the commands that may make a store where there is none: `store init`,
    /// and those that add its first things.
    pub fn may_create_store(&self) -> bool {
        matches!(
            self,
            Command::Store(StoreCommand::Init)
                | Command::Vdisk(VdiskCommand::Create { .. } | VdiskCommand::Import { .. })
                | Command::Device(DeviceCommand::Add { .. })
                | Command::Collection(CollectionCommand::Add(_))
        )
    }
}

impl DeviceSetArgs {
    /// The change the arguments ask for.
    pub fn change(&self) -> resources::DeviceChange {
        resources::DeviceChange {
            name: self.name.clone(),
            collection: if self.no_collection {
                Some(None)
            } else {
                self.collection.clone().map(Some)
            },
            device_type: self.device_type.map(|t| t.as_str().to_owned()),
            enabled: (self.enable || self.disable).then_some(self.enable),
        }
    }
}

impl From<&CollectionArgs> for resources::NewCollection {
    fn from(a: &CollectionArgs) -> Self {
        Self {
            name: a.name.clone(),
            auto_add: a.auto_add,
            device_type: Some(a.device_type.as_str().to_owned()),
            vdisk: a.vdisk.clone(),
            mode: Some(a.mode.as_str().to_owned()),
        }
    }
}

impl From<&CollectionSetArgs> for resources::CollectionChange {
    fn from(c: &CollectionSetArgs) -> Self {
        Self {
            auto_add: match (c.auto_add, c.no_auto_add) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            device_type: c.device_type.map(|t| t.as_str().to_owned()),
            vdisk: if c.no_vdisk {
                Some(None)
            } else {
                c.vdisk.clone().map(Some)
            },
            mode: c.mode.map(|m| m.as_str().to_owned()),
        }
    }
}

impl PersonalityCommand {
    /// The device (MAC or name) it is about.
    pub fn device(&self) -> &str {
        match self {
            PersonalityCommand::Set { device, .. }
            | PersonalityCommand::Unset { device, .. }
            | PersonalityCommand::Get { device } => device,
        }
    }

    /// The device and the change of a `set` or `unset`; `None` for `get`.
    pub fn change(&self) -> Option<(&str, resources::PersonalityChange)> {
        match self {
            PersonalityCommand::Set {
                device,
                values,
                secret,
            } => Some((
                device,
                resources::PersonalityChange {
                    values: values
                        .iter()
                        .map(|(k, v)| (k.clone(), Some(v.clone())))
                        .collect(),
                    secret: *secret,
                },
            )),
            PersonalityCommand::Unset { device, keys } => Some((
                device,
                resources::PersonalityChange {
                    values: keys.iter().map(|k| (k.clone(), None)).collect(),
                    secret: false,
                },
            )),
            PersonalityCommand::Get { .. } => None,
        }
    }
}
