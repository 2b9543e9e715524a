//! vDisks and their versions: add, list, new version, promote, roll back.

use super::backend::Queries;
use super::names::{NameOf, check_name};
use super::{Store, now};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{VDisk, Version, VersionState};

/// The versions of the vDisk called `name`, with its id.
fn versions_of(q: &dyn Queries, name: &str) -> Result<(i64, Vec<Version>)> {
    let vdisk = q.vdisk(name)?;
    Ok((vdisk.id, q.versions(vdisk.id)?))
}

impl Store {
    /// Records a new vDisk whose base (version 0, in production) is the image `file`
    /// (relative to the store folder).
    pub fn add_vdisk(&self, name: &str, size: u64, description: &str, file: &str) -> Result<VDisk> {
        check_name(NameOf::VDisk, name)?;
        if size == 0 || i64::try_from(size).is_err() {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("vDisk size {size} is out of range"),
            ));
        }
        let detail = format!("size {size}, base {file}");
        self.change("vdisk.add", name, &detail, |q| {
            let vdisk = q.insert_vdisk(name, size, description, now())?;
            q.insert_version(&Version {
                vdisk_id: vdisk.id,
                number: 0,
                file: file.to_owned(),
                state: VersionState::Production,
                note: String::new(),
                created_at: now(),
            })?;
            Ok(vdisk)
        })
    }

    /// The vDisk called `name`.
    pub fn vdisk(&self, name: &str) -> Result<VDisk> {
        self.read(|q| q.vdisk(name))
    }

    /// Every vDisk, by name.
    pub fn vdisks(&self) -> Result<Vec<VDisk>> {
        self.read(|q| q.vdisks())
    }

    /// Removes a vDisk that no device has assigned; returns its version files (relative
    /// to the store folder), which stay on disk as leftovers until
    /// [`crate::Sessions::clean_leftover_files`] (or [`crate::clean_leftover_files`])
    /// deletes them once no session uses them.
    pub fn remove_vdisk(&self, name: &str) -> Result<Vec<String>> {
        self.change("vdisk.remove", name, "", |q| {
            let vdisk = q.vdisk(name)?;
            let users = q.vdisk_users(vdisk.id)?;
            if users > 0 {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("vDisk `{name}` is still assigned to {users} device(s)"),
                ));
            }
            let files = q.versions(vdisk.id)?.into_iter().map(|v| v.file).collect();
            q.delete_vdisk(vdisk.id)?;
            Ok(files)
        })
    }

    /// The versions of a vDisk, oldest (the base) first.
    pub fn versions(&self, vdisk: &str) -> Result<Vec<Version>> {
        self.read(|q| Ok(versions_of(q, vdisk)?.1))
    }

    /// Records version N+1 (image `file`, a differencing image over version N) in the
    /// maintenance state. Only one version may be in maintenance at a time.
    pub fn add_version(&self, vdisk: &str, file: &str, note: &str) -> Result<Version> {
        self.change("version.new", vdisk, &format!("file {file}: {note}"), |q| {
            let (id, versions) = versions_of(q, vdisk)?;
            if let Some(open) = versions.iter().find(|v| v.state == VersionState::Maintenance) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "vDisk `{vdisk}` already has version {} in maintenance; promote or remove it first",
                        open.number
                    ),
                ));
            }
            let version = Version {
                vdisk_id: id,
                number: versions.last().map_or(0, |v| v.number + 1),
                file: file.to_owned(),
                state: VersionState::Maintenance,
                note: note.to_owned(),
                created_at: now(),
            };
            q.insert_version(&version)?;
            Ok(version)
        })
    }

    /// The newest version, if any, that a newer version does not depend on: the one
    /// [`Store::remove_newest_version`] would remove.
    fn newest(q: &dyn Queries, vdisk: &str) -> Result<(i64, Version)> {
        let (id, mut versions) = versions_of(q, vdisk)?;
        let newest = versions.pop().expect("every vDisk has a base");
        Ok((id, newest))
    }

    /// Moves the newest version one step on: maintenance -> test -> production (the old
    /// production version becomes superseded). Returns the promoted version.
    pub fn promote(&self, vdisk: &str) -> Result<Version> {
        self.change("version.promote", vdisk, "", |q| {
            let (id, newest) = Self::newest(q, vdisk)?;
            // A maintenance device writing the version keeps it until its session ends:
            // test devices must not see it change under them.
            let _writers_kept_out = match (&self.dir, newest.state) {
                (Some(dir), VersionState::Maintenance) => Some(
                    crate::file_lock::FileLock::exclusive(&dir.join(&newest.file), "a session")
                        .map_err(|e| in_use(e, vdisk, newest.number, "promote"))?,
                ),
                _ => None,
            };
            let next = match newest.state {
                VersionState::Maintenance => VersionState::Test,
                VersionState::Test => VersionState::Production,
                VersionState::Production | VersionState::Superseded => {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "the newest version of `{vdisk}` (version {}) is already {}; create a new version first",
                            newest.number, newest.state
                        ),
                    ));
                }
            };
            if next == VersionState::Production {
                for current in q.versions(id)? {
                    if current.state == VersionState::Production {
                        q.set_version_state(id, current.number, VersionState::Superseded)?;
                    }
                }
            }
            q.set_version_state(id, newest.number, next)?;
            Ok(Version { state: next, ..newest })
        })
    }

    /// Records in the audit log that version `number` of `vdisk` became a base.
    pub(crate) fn record_merge(&self, vdisk: &str, number: u32, copied: u64) -> Result<()> {
        let detail = format!("version {number}: {copied} bytes of data");
        self.change("version.merge", vdisk, &detail, |_| Ok(()))
    }

    /// Makes the previous production version current again; the rolled-back version
    /// returns to test. Returns the version that is now in production.
    pub fn rollback(&self, vdisk: &str) -> Result<Version> {
        self.change("version.rollback", vdisk, "", |q| {
            let (id, versions) = versions_of(q, vdisk)?;
            let current = versions
                .iter()
                .find(|v| v.state == VersionState::Production);
            let previous = versions
                .iter()
                .rev()
                .find(|v| v.state == VersionState::Superseded);
            let (Some(current), Some(previous)) = (current, previous) else {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("vDisk `{vdisk}` has no earlier production version to roll back to"),
                ));
            };
            q.set_version_state(id, current.number, VersionState::Test)?;
            q.set_version_state(id, previous.number, VersionState::Production)?;
            Ok(Version {
                state: VersionState::Production,
                ..previous.clone()
            })
        })
    }

    /// Removes the newest version (never the base nor the production version). Its file
    /// stays on disk, for sessions that still read it, as a leftover that
    /// [`crate::Sessions::clean_leftover_files`] deletes once no session and no private
    /// disk needs it.
    pub fn remove_newest_version(&self, vdisk: &str) -> Result<Version> {
        self.change("version.remove", vdisk, "", |q| {
            let (id, newest) = Self::newest(q, vdisk)?;
            if newest.number == 0 || newest.state == VersionState::Production {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "version {} of `{vdisk}` is {}; only a newer, non-production version can be removed",
                        newest.number,
                        if newest.number == 0 { "the base" } else { "in production" }
                    ),
                ));
            }
            q.delete_version(id, newest.number)?;
            Ok(newest)
        })
    }

    /// Points version `number` at a new image file (after a merge flattened its chain),
    /// returning the file it replaced.
    pub fn replace_version_file(&self, vdisk: &str, number: u32, file: &str) -> Result<String> {
        self.change(
            "version.replace_file",
            vdisk,
            &format!("version {number} -> {file}"),
            |q| {
                let (id, versions) = versions_of(q, vdisk)?;
                let old = versions
                    .into_iter()
                    .find(|v| v.number == number)
                    .ok_or_else(|| Error::not_found("version", format!("{vdisk} {number}")))?;
                q.set_version_file(id, number, file)?;
                Ok(old.file)
            },
        )
    }
}

/// The error for a version a session writes: what to do about it.
pub(crate) fn in_use(e: Error, vdisk: &str, number: u32, what: &str) -> Error {
    if e.kind() != ErrorKind::Conflict {
        return e;
    }
    Error::new(
        ErrorKind::Conflict,
        format!(
            "cannot {what} version {number} of `{vdisk}`: a maintenance session writes it; \
             shut the maintenance device down, or end its session with \
             `provision sessions reset DEVICE`, then try again"
        ),
    )
}
