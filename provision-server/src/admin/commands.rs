//! The subcommands and what each does to the store.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use provision_core::{
    CollectionSettings, DeviceType, DeviceUpdate, Error, ErrorKind, Mac, Mode, Result, Store,
    clean_leftover_files, create_vdisk, import_vdisk, leftover_files, merge_version, new_version,
};

use super::{Progress, render};

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
}

#[derive(Debug, Subcommand)]
pub enum VdiskCommand {
    /// Import a raw image or a VHD (a chain included) as a new vDisk.
    Import {
        /// Name of the new vDisk.
        name: String,
        /// The image file.
        file: PathBuf,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Create a new, empty vDisk.
    Create {
        /// Name of the new vDisk.
        name: String,
        /// Size: 512, 64K, 100M, 20G.
        #[arg(long, value_parser = parse_size)]
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
    /// Change a device.
    Set {
        /// MAC or name.
        device: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New collection.
        #[arg(long, conflicts_with = "no_collection")]
        collection: Option<String>,
        /// Take it out of its collection.
        #[arg(long)]
        no_collection: bool,
        /// production, test or maintenance.
        #[arg(long = "type", value_parser = parse::<DeviceType>)]
        device_type: Option<DeviceType>,
        /// Enable the device.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable the device: it is refused at boot.
        #[arg(long)]
        disable: bool,
    },
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

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Add a collection.
    Add(CollectionArgs),
    /// Change a collection's settings: only those given change.
    Set(CollectionChange),
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
    name: String,
    /// Add unknown devices that boot to this collection (only one collection can).
    #[arg(long)]
    auto_add: bool,
    /// Device type given to its devices.
    #[arg(long = "type", default_value = "production", value_parser = parse::<DeviceType>)]
    device_type: DeviceType,
    /// vDisk assigned to auto-added devices.
    #[arg(long)]
    vdisk: Option<String>,
    /// Mode of that assignment.
    #[arg(long, default_value = "standard", value_parser = parse::<Mode>)]
    mode: Mode,
}

#[derive(Debug, clap::Args)]
pub struct CollectionChange {
    /// Collection name.
    name: String,
    /// Add unknown devices that boot to this collection (turns it off on the others).
    #[arg(long, conflicts_with = "no_auto_add")]
    auto_add: bool,
    /// Stop adding unknown devices to it.
    #[arg(long)]
    no_auto_add: bool,
    /// Device type given to its devices.
    #[arg(long = "type", value_parser = parse::<DeviceType>)]
    device_type: Option<DeviceType>,
    /// vDisk assigned to auto-added devices.
    #[arg(long, conflicts_with = "no_vdisk")]
    vdisk: Option<String>,
    /// Assign no vDisk to auto-added devices.
    #[arg(long)]
    no_vdisk: bool,
    /// Mode of that assignment.
    #[arg(long, value_parser = parse::<Mode>)]
    mode: Option<Mode>,
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

fn parse_size(text: &str) -> std::result::Result<u64, String> {
    crate::parse_size(text).map_err(|e| e.to_string())
}

fn parse_pair(text: &str) -> std::result::Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

/// What a command does to the store, for deciding who may run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Reads only.
    Reads,
    /// Day-to-day changes: devices, assignments, personality, versions, resets.
    Changes,
    /// Removals, merges, imports, secrets, store maintenance.
    Destroys,
}

impl Command {
    /// What the command does to the store (see [`Reach`]).
    pub fn reach(&self) -> Reach {
        use Command as C;
        match self {
            C::Status
            | C::Audit { .. }
            | C::Sessions(SessionsCommand::List)
            | C::Vdisk(VdiskCommand::List | VdiskCommand::Show { .. })
            | C::Version(VersionCommand::List { .. })
            | C::Device(DeviceCommand::List | DeviceCommand::Show { .. })
            | C::Collection(CollectionCommand::List)
            | C::Personality(PersonalityCommand::Get { .. })
            | C::Store(StoreCommand::Check { clean: false }) => Reach::Reads,
            C::Vdisk(VdiskCommand::Remove { .. } | VdiskCommand::Import { .. })
            | C::Version(VersionCommand::Remove { .. } | VersionCommand::Merge { .. })
            | C::Device(DeviceCommand::Remove { .. } | DeviceCommand::AttachSecret { .. })
            | C::Collection(CollectionCommand::Remove { .. })
            | C::Store(_) => Reach::Destroys,
            _ => Reach::Changes,
        }
    }

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

/// Runs one command on `store`; returns what to print. `in_use` tells which store files
/// running sessions still read (never on a store used directly: no session runs
/// there). Sessions and status belong to the running server, which answers them itself.
pub fn run(
    store: &Store,
    command: Command,
    json: bool,
    progress: Progress<'_>,
    in_use: &dyn Fn(&str) -> bool,
) -> Result<String> {
    let out = render::Out { json };
    match command {
        Command::Vdisk(c) => vdisk(store, c, out, progress),
        Command::Version(c) => version(store, c, out, progress),
        Command::Device(c) => device(store, c, out),
        Command::Assign {
            device,
            vdisk,
            mode,
            position,
        } => Ok(out.assignments(&store.assign(&device, &vdisk, mode, position)?)),
        Command::Unassign { device, vdisk } => {
            Ok(out.assignments(&store.unassign(&device, &vdisk)?))
        }
        Command::Pin {
            device,
            vdisk,
            version,
        } => Ok(out.assignments(&store.pin(&device, &vdisk, version)?)),
        Command::Collection(c) => collection(store, c, out),
        Command::Personality(c) => personality(store, c, out),
        Command::Store(StoreCommand::Check { clean }) => check(store, clean, in_use, out),
        Command::Store(StoreCommand::Init) => Ok(out.object(&serde_json::json!({
            "store": store.dir().map(|d| d.display().to_string()),
        }))),
        Command::Audit { limit } => Ok(out.audit(&store.audit_log(limit)?)),
        Command::Sessions(_) | Command::Status => Err(Error::Domain {
            kind: ErrorKind::Refused,
            message: "sessions and status live in the running provisiond: use --api URL \
                      (or its configuration file) instead of --store"
                .into(),
        }),
    }
}

fn vdisk(
    store: &Store,
    command: VdiskCommand,
    out: render::Out,
    progress: Progress<'_>,
) -> Result<String> {
    match command {
        VdiskCommand::Import {
            name,
            file,
            description,
        } => {
            let what = format!("importing {name}");
            let vdisk = import_vdisk(store, &name, &file, &description, &mut |done, total| {
                progress(&what, done, total);
            })?;
            Ok(out.vdisks(&[vdisk]))
        }
        VdiskCommand::Create {
            name,
            size,
            description,
        } => Ok(out.vdisks(&[create_vdisk(store, &name, size, &description)?])),
        VdiskCommand::List => Ok(out.vdisks(&store.vdisks()?)),
        VdiskCommand::Show { name } => {
            Ok(out.vdisk_detail(&store.vdisk(&name)?, &store.versions(&name)?))
        }
        VdiskCommand::Remove { name } => {
            let files = store.remove_vdisk(&name)?;
            Ok(out.message(&format!(
                "vDisk `{name}` removed; its files remain: {}",
                files.join(", ")
            )))
        }
    }
}

fn version(
    store: &Store,
    command: VersionCommand,
    out: render::Out,
    progress: Progress<'_>,
) -> Result<String> {
    match command {
        VersionCommand::New { vdisk, note } => {
            Ok(out.versions(&[new_version(store, &vdisk, &note)?]))
        }
        VersionCommand::List { vdisk } => Ok(out.versions(&store.versions(&vdisk)?)),
        VersionCommand::Promote { vdisk } => Ok(out.versions(&[store.promote(&vdisk)?])),
        VersionCommand::Rollback { vdisk } => Ok(out.versions(&[store.rollback(&vdisk)?])),
        VersionCommand::Merge { vdisk, version } => {
            let what = format!("merging {vdisk} v{version}");
            let copied = merge_version(store, &vdisk, version, &mut |done, total| {
                progress(&what, done, total);
            })?;
            Ok(out.message(&format!(
                "version {version} of `{vdisk}` is now a base ({copied} bytes of data)"
            )))
        }
        VersionCommand::Remove { vdisk } => {
            let removed = store.remove_newest_version(&vdisk)?;
            Ok(out.message(&format!(
                "version {} of `{vdisk}` removed; its file {} remains",
                removed.number, removed.file
            )))
        }
    }
}

fn device(store: &Store, command: DeviceCommand, out: render::Out) -> Result<String> {
    match command {
        DeviceCommand::Add {
            mac,
            name,
            collection,
            device_type,
        } => {
            Ok(out.devices(&[store.add_device(mac, &name, collection.as_deref(), device_type)?]))
        }
        DeviceCommand::List => Ok(out.devices(&store.devices()?)),
        DeviceCommand::Show { device } => {
            let d = store.device(&device)?;
            Ok(out.device_detail(
                &d,
                &store.assignments(&device)?,
                &store.personality_shown(&device)?,
            ))
        }
        DeviceCommand::Set {
            device,
            name,
            collection,
            no_collection,
            device_type,
            enable,
            disable,
        } => {
            let update = DeviceUpdate {
                name,
                collection: if no_collection {
                    Some(None)
                } else {
                    collection.map(Some)
                },
                device_type,
                enabled: (enable || disable).then_some(enable),
            };
            Ok(out.devices(&[store.set_device(&device, &update)?]))
        }
        DeviceCommand::Remove { device } => Ok(out.devices(&[store.remove_device(&device)?])),
        DeviceCommand::AttachSecret { device, rotate } => {
            let d = store.device(&device)?;
            let secret = match store.attach_secret(&device)? {
                Some(secret) if !rotate => secret,
                _ => store.rotate_attach_secret(&device)?,
            };
            Ok(out.object(&serde_json::json!({
                "device": d.name,
                "attach_secret": secret.to_string(),
                "export": format!("{}/<vdisk>/{secret}", d.mac),
            })))
        }
    }
}

fn collection(store: &Store, command: CollectionCommand, out: render::Out) -> Result<String> {
    let settings = |a: &CollectionArgs| CollectionSettings {
        auto_add: a.auto_add,
        default_device_type: a.device_type,
        default_vdisk: a.vdisk.clone(),
        default_mode: a.mode,
    };
    match command {
        CollectionCommand::Add(a) => {
            Ok(out.collections(&[store.add_collection(&a.name, &settings(&a))?]))
        }
        CollectionCommand::Set(change) => {
            let now = store.collection(&change.name)?;
            let settings = CollectionSettings {
                auto_add: match (change.auto_add, change.no_auto_add) {
                    (true, _) => true,
                    (_, true) => false,
                    _ => now.auto_add,
                },
                default_device_type: change.device_type.unwrap_or(now.default_device_type),
                default_vdisk: if change.no_vdisk {
                    None
                } else {
                    change.vdisk.or(now.default_vdisk)
                },
                default_mode: change.mode.unwrap_or(now.default_mode),
            };
            Ok(out.collections(&[store.set_collection(&change.name, &settings)?]))
        }
        CollectionCommand::List => Ok(out.collections(&store.collections()?)),
        CollectionCommand::Remove { name } => {
            Ok(out.collections(&[store.remove_collection(&name)?]))
        }
    }
}

fn personality(store: &Store, command: PersonalityCommand, out: render::Out) -> Result<String> {
    match command {
        PersonalityCommand::Set {
            device,
            values,
            secret,
        } => {
            for (key, value) in &values {
                if secret {
                    store.set_secret_personality(&device, key, value)?;
                } else {
                    store.set_personality(&device, key, Some(value))?;
                }
            }
            Ok(out.personality(&store.personality_shown(&device)?))
        }
        PersonalityCommand::Unset { device, keys } => {
            for key in &keys {
                store.set_personality(&device, key, None)?;
            }
            Ok(out.personality(&store.personality_shown(&device)?))
        }
        PersonalityCommand::Get { device } => {
            Ok(out.personality(&store.personality_shown(&device)?))
        }
    }
}

/// `store check`: lists the files no version names, or with `clean` deletes those
/// that nothing needs: `in_use` tells which files running sessions still read.
fn check(
    store: &Store,
    clean: bool,
    in_use: &dyn Fn(&str) -> bool,
    out: render::Out,
) -> Result<String> {
    if clean {
        let cleanup = clean_leftover_files(store, in_use)?;
        let mut text = format!("{} leftover file(s) removed", cleanup.removed.len());
        if !cleanup.kept.is_empty() {
            text.push_str(&format!(
                "; kept, still in use (a later clean removes them): {}",
                cleanup.kept.join(", ")
            ));
        }
        return Ok(out.message(&text));
    }
    let leftovers = leftover_files(store)?;
    if leftovers.is_empty() {
        return Ok(out.message("the store is consistent: every file belongs to a version"));
    }
    Err(Error::Domain {
        kind: ErrorKind::Conflict,
        message: format!(
            "files no version names (run `provision store check --clean` to delete them): {}",
            leftovers.join(", ")
        ),
    })
}
