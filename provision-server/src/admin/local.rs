//! `provision --store DIR`: a command line run on a store folder directly, with the
//! same typed operations the API runs.

use provision_core::{Error, ErrorKind, Result, Store};

use super::Progress;
use super::cli::{
    CollectionCommand, Command, DeviceCommand, PersonalityCommand, StoreCommand, VdiskCommand,
    VersionCommand,
};
use super::ops;
use super::render::Answer;
use crate::resources::{
    AssignmentChange, CollectionChange, NewCollection, NewDevice, NewVdisk, NewVersion,
};

/// Runs one command on the store in `dir` (as `provision --store DIR`): a folder
/// without a store is an error (exit status 3) unless the command may create one.
/// The error carries the exit status.
pub fn run_in(
    dir: &std::path::Path,
    actor: &str,
    command: Command,
    progress: Progress<'_>,
) -> std::result::Result<Answer, (u8, String)> {
    let exists = dir.join(provision_core::DATABASE_FILE).is_file();
    if !exists && !command.may_create_store() {
        return Err((
            3,
            format!(
                "there is no store in {dir}: create one with `provision --store {dir} store \
                 init`, or check the path",
                dir = dir.display()
            ),
        ));
    }
    let store = Store::open(dir)
        .map(|s| s.with_actor(actor))
        .map_err(|e| (1, format!("cannot open the store {}: {e}", dir.display())))?;
    if !exists {
        crate::errln!("provision: created a new store in {}", dir.display());
    }
    run(&store, command, progress).map_err(|e| (super::exit_code(&e), e.to_string()))
}

/// Runs one command on `store`. No session runs on a store used directly, so no file
/// is in use; sessions and status belong to a running provisiond.
pub fn run(store: &Store, command: Command, progress: Progress<'_>) -> Result<Answer> {
    Ok(match command {
        Command::Vdisk(c) => vdisk(store, c, progress)?,
        Command::Version(c) => version(store, c, progress)?,
        Command::Device(c) => device(store, c)?,
        Command::Assign {
            device,
            vdisk,
            mode,
            position,
        } => {
            let change = AssignmentChange {
                mode: Some(mode.as_str().to_owned()),
                position,
            };
            Answer::Assignments(ops::assign(store, &device, &vdisk, &change)?)
        }
        Command::Unassign { device, vdisk } => {
            Answer::Assignments(ops::unassign(store, &device, &vdisk)?)
        }
        Command::Pin {
            device,
            vdisk,
            version,
        } => Answer::Assignments(ops::pin(store, &device, &vdisk, version)?),
        Command::Collection(c) => collection(store, c)?,
        Command::Personality(c) => personality(store, c)?,
        Command::Store(StoreCommand::Check { clean: false }) => {
            Answer::Message(ops::check_store(store)?)
        }
        Command::Store(StoreCommand::Check { clean: true }) => {
            Answer::Message(ops::clean_store(store, &|_| false)?)
        }
        Command::Store(StoreCommand::Backup { dest }) => {
            let what = format!("backing up to {}", dest.display());
            Answer::Message(ops::backup_store(store, &dest, &mut |done, total| {
                progress(&what, done, total);
            })?)
        }
        Command::Store(StoreCommand::Init) => Answer::message(format!(
            "store: {}",
            store
                .dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        )),
        Command::Audit { limit, before } => Answer::Audit(ops::audit(store, limit, before)?),
        Command::Sessions(_) | Command::Status => {
            return Err(Error::Domain {
                kind: ErrorKind::Refused,
                message: "sessions and status live in the running provisiond: use --api URL \
                          (or its configuration file) instead of --store"
                    .into(),
            });
        }
    })
}

fn vdisk(store: &Store, command: VdiskCommand, progress: Progress<'_>) -> Result<Answer> {
    Ok(match command {
        VdiskCommand::Import {
            name,
            file,
            description,
            ..
        } => {
            let what = format!("importing {name}");
            let vdisk = ops::import(store, &name, &file, &description, &mut |done, total| {
                progress(&what, done, total);
            })?;
            Answer::Vdisks(vec![vdisk])
        }
        VdiskCommand::Create {
            name,
            size,
            description,
        } => Answer::Vdisks(vec![ops::add_vdisk(
            store,
            &NewVdisk {
                name,
                size,
                description,
            },
        )?]),
        VdiskCommand::List => Answer::Vdisks(ops::vdisks(store)?),
        VdiskCommand::Show { name } => Answer::Vdisk(ops::vdisk(store, &name)?),
        VdiskCommand::Remove { name } => Answer::Message(ops::remove_vdisk(store, &name)?),
    })
}

fn version(store: &Store, command: VersionCommand, progress: Progress<'_>) -> Result<Answer> {
    Ok(match command {
        VersionCommand::New { vdisk, note } => {
            Answer::Versions(vec![ops::add_version(store, &vdisk, &NewVersion { note })?])
        }
        VersionCommand::List { vdisk } => Answer::Versions(ops::versions(store, &vdisk)?),
        VersionCommand::Promote { vdisk } => Answer::Versions(vec![ops::promote(store, &vdisk)?]),
        VersionCommand::Rollback { vdisk } => Answer::Versions(vec![ops::rollback(store, &vdisk)?]),
        VersionCommand::Merge { vdisk, version } => {
            let what = format!("merging {vdisk} v{version}");
            Answer::Message(ops::merge(store, &vdisk, version, &mut |done, total| {
                progress(&what, done, total);
            })?)
        }
        VersionCommand::Remove { vdisk } => {
            Answer::Message(ops::remove_version(store, &vdisk, None)?)
        }
    })
}

fn device(store: &Store, command: DeviceCommand) -> Result<Answer> {
    Ok(match command {
        DeviceCommand::Add {
            mac,
            name,
            collection,
            device_type,
        } => Answer::Devices(vec![ops::add_device(
            store,
            &NewDevice {
                mac: mac.to_string(),
                name,
                collection,
                device_type: Some(device_type.as_str().to_owned()),
            },
        )?]),
        DeviceCommand::List => Answer::Devices(ops::devices(store)?),
        DeviceCommand::Show { device } => Answer::Device(ops::device(store, &device)?),
        DeviceCommand::Set(set) => {
            Answer::Devices(vec![ops::change_device(store, &set.device, &set.change())?])
        }
        DeviceCommand::Remove { device } => {
            Answer::Devices(vec![ops::remove_device(store, &device)?])
        }
        DeviceCommand::AttachSecret { device, rotate } => {
            Answer::AttachSecret(ops::attach_secret(store, &device, rotate)?)
        }
    })
}

fn collection(store: &Store, command: CollectionCommand) -> Result<Answer> {
    Ok(match command {
        CollectionCommand::Add(a) => {
            Answer::Collections(vec![ops::add_collection(store, &NewCollection::from(&a))?])
        }
        CollectionCommand::Set(change) => Answer::Collections(vec![ops::change_collection(
            store,
            &change.name,
            &CollectionChange::from(&change),
        )?]),
        CollectionCommand::List => Answer::Collections(ops::collections(store)?),
        CollectionCommand::Remove { name } => {
            Answer::Collections(vec![ops::remove_collection(store, &name)?])
        }
    })
}

fn personality(store: &Store, command: PersonalityCommand) -> Result<Answer> {
    Ok(Answer::Personality(match command.change() {
        None => ops::personality(store, command.device())?,
        Some((device, change)) => ops::change_personality(store, device, &change)?,
    }))
}
