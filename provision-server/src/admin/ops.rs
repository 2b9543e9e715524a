//! The admin operations, typed: what the API's routes and `provision --store` do to a
//! store, with the API's resources in and out. Sessions and status belong to a running
//! server (its API).

use std::collections::BTreeMap;
use std::path::Path;

use provision_core::{
    CollectionSettings, DeviceType, DeviceUpdate, Error, ErrorKind, Mac, Mode, Result, Store,
    clean_leftover_files, create_vdisk, import_vdisk, leftover_files, merge_version, new_version,
};

use crate::resources::{
    AssignmentChange, AssignmentView, AttachSecretView, AuditView, CollectionChange,
    CollectionView, DeviceChange, DeviceDetail, DeviceView, Message, NewCollection, NewDevice,
    NewVdisk, NewVersion, PersonalityChange, VdiskDetail, VdiskView, VersionView, views,
};

/// Reports progress of long disk work: bytes done, bytes in all.
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

fn parse<T: std::str::FromStr<Err = Error>>(text: Option<&str>, default: T) -> Result<T> {
    text.map_or(Ok(default), str::parse)
}

pub fn vdisks(store: &Store) -> Result<Vec<VdiskView>> {
    Ok(views(&store.vdisks()?))
}

pub fn vdisk(store: &Store, name: &str) -> Result<VdiskDetail> {
    Ok(VdiskDetail {
        vdisk: (&store.vdisk(name)?).into(),
        versions: views(&store.versions(name)?),
    })
}

pub fn add_vdisk(store: &Store, new: &NewVdisk) -> Result<VdiskView> {
    Ok((&create_vdisk(store, &new.name, new.size, &new.description)?).into())
}

/// Imports the image `file` (raw or VHD, a chain included) as the vDisk `name`.
pub fn import(
    store: &Store,
    name: &str,
    file: &Path,
    description: &str,
    progress: Progress<'_>,
) -> Result<VdiskView> {
    Ok((&import_vdisk(store, name, file, description, progress)?).into())
}

pub fn remove_vdisk(store: &Store, name: &str) -> Result<Message> {
    let files = store.remove_vdisk(name)?;
    Ok(Message {
        message: format!(
            "vDisk `{name}` removed; its files remain: {}",
            files.join(", ")
        ),
    })
}

/// The versions of `vdisk`, each with the kernel and initrd it boots: their copies are
/// made now for versions that have none yet (as the first boot of the version would).
pub fn versions(store: &Store, vdisk: &str) -> Result<Vec<VersionView>> {
    let versions = store.versions(vdisk)?;
    let mut list: Vec<VersionView> = views(&versions);
    if let Some(dir) = store.dir() {
        for (view, v) in list.iter_mut().zip(&versions) {
            let found =
                provision_core::boot_files::extract_boot_files(dir, vdisk, v.number, &v.file)?;
            view.boots = Some(match found {
                Some(f) => format!("{} {}", f.kernel_source, f.initrd_source),
                None => "configured paths".to_owned(),
            });
        }
    }
    Ok(list)
}

pub fn add_version(store: &Store, vdisk: &str, new: &NewVersion) -> Result<VersionView> {
    Ok((&new_version(store, vdisk, &new.note)?).into())
}

pub fn promote(store: &Store, vdisk: &str) -> Result<VersionView> {
    Ok((&store.promote(vdisk)?).into())
}

pub fn rollback(store: &Store, vdisk: &str) -> Result<VersionView> {
    Ok((&store.rollback(vdisk)?).into())
}

/// Flattens version `number`'s chain into a new base, in place.
pub fn merge(store: &Store, vdisk: &str, number: u32, progress: Progress<'_>) -> Result<Message> {
    let copied = merge_version(store, vdisk, number, progress)?;
    Ok(Message {
        message: format!("version {number} of `{vdisk}` is now a base ({copied} bytes of data)"),
    })
}

/// Removes the newest version, which must be `number` when given (so that a repeated
/// request does not remove the one before).
pub fn remove_version(store: &Store, vdisk: &str, number: Option<u32>) -> Result<Message> {
    if let Some(number) = number {
        let newest = store.versions(vdisk)?.last().map(|v| v.number);
        if newest != Some(number) {
            return Err(Error::Domain {
                kind: ErrorKind::Conflict,
                message: format!(
                    "only the newest version of `{vdisk}` can be removed, and {number} is not it"
                ),
            });
        }
    }
    let removed = store.remove_newest_version(vdisk)?;
    Ok(Message {
        message: format!(
            "version {} of `{vdisk}` removed; its file {} remains",
            removed.number, removed.file
        ),
    })
}

pub fn devices(store: &Store) -> Result<Vec<DeviceView>> {
    Ok(views(&store.devices()?))
}

pub fn device(store: &Store, key: &str) -> Result<DeviceDetail> {
    Ok(DeviceDetail {
        device: (&store.device(key)?).into(),
        assignments: views(&store.assignments(key)?),
        personality: personality(store, key)?,
    })
}

pub fn add_device(store: &Store, new: &NewDevice) -> Result<DeviceView> {
    let mac: Mac = new.mac.parse()?;
    let device_type = parse(new.device_type.as_deref(), DeviceType::Production)?;
    Ok((&store.add_device(mac, &new.name, new.collection.as_deref(), device_type)?).into())
}

pub fn change_device(store: &Store, key: &str, change: &DeviceChange) -> Result<DeviceView> {
    let update = DeviceUpdate {
        name: change.name.clone(),
        collection: change.collection.clone(),
        device_type: change.device_type.as_deref().map(str::parse).transpose()?,
        enabled: change.enabled,
    };
    Ok((&store.set_device(key, &update)?).into())
}

pub fn remove_device(store: &Store, key: &str) -> Result<DeviceView> {
    Ok((&store.remove_device(key)?).into())
}

/// The device's attach secret; the first call, or `rotate`, makes a new one.
pub fn attach_secret(store: &Store, key: &str, rotate: bool) -> Result<AttachSecretView> {
    let device = store.device(key)?;
    let secret = match store.attach_secret(key)? {
        Some(secret) if !rotate => secret,
        _ => store.rotate_attach_secret(key)?,
    };
    Ok(AttachSecretView {
        device: device.name,
        attach_secret: secret.to_string(),
        export: format!("{}/<vdisk>/{secret}", device.mac),
        iscsi_initiator: provision_core::adapters::iscsi::initiator_name(device.mac),
        iscsi_chap_secret: provision_core::adapters::iscsi::chap_secret(&secret),
    })
}

pub fn assignments(store: &Store, device: &str) -> Result<Vec<AssignmentView>> {
    Ok(views(&store.assignments(device)?))
}

pub fn assign(
    store: &Store,
    device: &str,
    vdisk: &str,
    change: &AssignmentChange,
) -> Result<Vec<AssignmentView>> {
    let mode = parse(change.mode.as_deref(), Mode::Standard)?;
    Ok(views(&store.assign(
        device,
        vdisk,
        mode,
        change.position,
    )?))
}

pub fn unassign(store: &Store, device: &str, vdisk: &str) -> Result<Vec<AssignmentView>> {
    Ok(views(&store.unassign(device, vdisk)?))
}

pub fn pin(
    store: &Store,
    device: &str,
    vdisk: &str,
    version: Option<u32>,
) -> Result<Vec<AssignmentView>> {
    Ok(views(&store.pin(device, vdisk, version)?))
}

pub fn collections(store: &Store) -> Result<Vec<CollectionView>> {
    Ok(views(&store.collections()?))
}

pub fn add_collection(store: &Store, new: &NewCollection) -> Result<CollectionView> {
    let settings = CollectionSettings {
        auto_add: new.auto_add,
        default_device_type: parse(new.device_type.as_deref(), DeviceType::Production)?,
        default_vdisk: new.vdisk.clone(),
        default_mode: parse(new.mode.as_deref(), Mode::Standard)?,
    };
    Ok((&store.add_collection(&new.name, &settings)?).into())
}

/// Changes only the settings `change` names.
pub fn change_collection(
    store: &Store,
    name: &str,
    change: &CollectionChange,
) -> Result<CollectionView> {
    let now = store.collection(name)?;
    let settings = CollectionSettings {
        auto_add: change.auto_add.unwrap_or(now.auto_add),
        default_device_type: parse(change.device_type.as_deref(), now.default_device_type)?,
        default_vdisk: change.vdisk.clone().unwrap_or(now.default_vdisk),
        default_mode: parse(change.mode.as_deref(), now.default_mode)?,
    };
    Ok((&store.set_collection(name, &settings)?).into())
}

pub fn remove_collection(store: &Store, name: &str) -> Result<CollectionView> {
    Ok((&store.remove_collection(name)?).into())
}

/// A device's personality; secret values read as set, not shown.
pub fn personality(store: &Store, device: &str) -> Result<BTreeMap<String, String>> {
    Ok(store.personality_shown(device)?.into_iter().collect())
}

pub fn change_personality(
    store: &Store,
    device: &str,
    change: &PersonalityChange,
) -> Result<BTreeMap<String, String>> {
    for (key, value) in &change.values {
        match value {
            Some(value) if change.secret => store.set_secret_personality(device, key, value)?,
            value => store.set_personality(device, key, value.as_deref())?,
        }
    }
    personality(store, device)
}

/// A page of the audit log, newest first.
pub fn audit(store: &Store, limit: u32, before: Option<i64>) -> Result<Vec<AuditView>> {
    Ok(views(&store.audit_page(limit, before)?))
}

/// Files of the store that no version names; an error (conflict) when there are any.
pub fn check_store(store: &Store) -> Result<Message> {
    let leftovers = leftover_files(store)?;
    if leftovers.is_empty() {
        return Ok(Message {
            message: "the store is consistent: every file belongs to a version".into(),
        });
    }
    Err(Error::Domain {
        kind: ErrorKind::Conflict,
        message: format!(
            "files no version names (run `provision store check --clean` to delete them): {}",
            leftovers.join(", ")
        ),
    })
}

/// Copies the store into `dest` (see [`provision_core::backup_store`]); a `Conflict`
/// naming what was left out when a live file kept changing.
pub fn backup_store(
    store: &Store,
    dest: &std::path::Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Message> {
    let report = provision_core::backup_store(store, dest, progress)?;
    let mut message = format!(
        "backed up {} file(s), {:.1} MiB, to {}",
        report.copied.len(),
        report.bytes as f64 / f64::from(1 << 20),
        dest.display()
    );
    if report.skipped.is_empty() {
        return Ok(Message { message });
    }
    for (file, why) in &report.skipped {
        message.push_str(&format!("; left out {file}: {why}"));
    }
    Err(Error::Domain {
        kind: ErrorKind::Conflict,
        message,
    })
}

/// Deletes the files no version names that nothing needs: `in_use` tells which files
/// running sessions still read.
pub fn clean_store(store: &Store, in_use: &dyn Fn(&str) -> bool) -> Result<Message> {
    let cleanup = clean_leftover_files(store, in_use)?;
    let mut text = format!("{} leftover file(s) removed", cleanup.removed.len());
    if !cleanup.kept.is_empty() {
        text.push_str(&format!(
            "; kept, still in use (a later clean removes them): {}",
            cleanup.kept.join(", ")
        ));
    }
    Ok(Message { message: text })
}
