//! vDisks and their versions: add, list, new version, promote, roll back.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::names::{NameOf, check_name};
use super::{Store, found, now, unique};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{VDisk, Version, VersionState};

fn vdisk_row(r: &Row<'_>) -> rusqlite::Result<VDisk> {
    Ok(VDisk {
        id: r.get(0)?,
        name: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        description: r.get(3)?,
    })
}

fn version_row(r: &Row<'_>) -> rusqlite::Result<Version> {
    let state: String = r.get(3)?;
    Ok(Version {
        vdisk_id: r.get(0)?,
        number: r.get(1)?,
        file: r.get(2)?,
        state: state.parse().map_err(|e: Error| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
        note: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const VDISK_COLUMNS: &str = "id, name, size, description";
const VERSION_COLUMNS: &str = "vdisk_id, number, file, state, note, created_at";

pub(crate) fn vdisk_in(tx: &rusqlite::Connection, name: &str) -> Result<VDisk> {
    found(
        tx.query_row(
            &format!("SELECT {VDISK_COLUMNS} FROM vdisks WHERE name = ?1"),
            [name],
            vdisk_row,
        ),
        "vDisk",
        name,
    )
}

pub(crate) fn versions_in(tx: &rusqlite::Connection, vdisk_id: i64) -> Result<Vec<Version>> {
    let mut stmt = tx.prepare(&format!(
        "SELECT {VERSION_COLUMNS} FROM versions WHERE vdisk_id = ?1 ORDER BY number"
    ))?;
    let rows = stmt.query_map([vdisk_id], version_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn set_state(tx: &Transaction<'_>, vdisk_id: i64, number: u32, state: VersionState) -> Result<()> {
    tx.execute(
        "UPDATE versions SET state = ?3 WHERE vdisk_id = ?1 AND number = ?2",
        params![vdisk_id, number, state.as_str()],
    )?;
    Ok(())
}

impl Store {
    /// Records a new vDisk whose base (version 0, in production) is the image `file`
    /// (relative to the store folder).
    pub fn add_vdisk(&self, name: &str, size: u64, description: &str, file: &str) -> Result<VDisk> {
        check_name(NameOf::VDisk, name)?;
        let size_i64 = i64::try_from(size).ok().filter(|s| *s > 0).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                format!("vDisk size {size} is out of range"),
            )
        })?;
        let detail = format!("size {size}, base {file}");
        self.change("vdisk.add", name, &detail, |tx| {
            unique(
                tx.execute(
                    "INSERT INTO vdisks (name, size, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![name, size_i64, description, now()],
                ),
                "vDisk",
                name,
            )?;
            let id = tx.last_insert_rowid();
            unique(
                tx.execute(
                    "INSERT INTO versions (vdisk_id, number, file, state, created_at) VALUES (?1, 0, ?2, 'production', ?3)",
                    params![id, file, now()],
                ),
                "version file",
                file,
            )?;
            vdisk_in(tx, name)
        })
    }

    /// The vDisk called `name`.
    pub fn vdisk(&self, name: &str) -> Result<VDisk> {
        vdisk_in(&self.lock(), name)
    }

    /// Every vDisk, by name.
    pub fn vdisks(&self) -> Result<Vec<VDisk>> {
        let db = self.lock();
        let mut stmt = db.prepare(&format!("SELECT {VDISK_COLUMNS} FROM vdisks ORDER BY name"))?;
        let rows = stmt.query_map([], vdisk_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a vDisk that no device has assigned; returns its version files (relative
    /// to the store folder), which stay on disk as leftovers until
    /// [`crate::Sessions::clean_leftover_files`] (or [`crate::clean_leftover_files`])
    /// deletes them once no session uses them.
    pub fn remove_vdisk(&self, name: &str) -> Result<Vec<String>> {
        self.change("vdisk.remove", name, "", |tx| {
            let vdisk = vdisk_in(tx, name)?;
            let users: i64 = tx.query_row(
                "SELECT COUNT(*) FROM assignments WHERE vdisk_id = ?1",
                [vdisk.id],
                |r| r.get(0),
            )?;
            if users > 0 {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("vDisk `{name}` is still assigned to {users} device(s)"),
                ));
            }
            let files = versions_in(tx, vdisk.id)?
                .into_iter()
                .map(|v| v.file)
                .collect();
            tx.execute("DELETE FROM vdisks WHERE id = ?1", [vdisk.id])?;
            Ok(files)
        })
    }

    /// The versions of a vDisk, oldest (the base) first.
    pub fn versions(&self, vdisk: &str) -> Result<Vec<Version>> {
        let db = self.lock();
        let vdisk = vdisk_in(&db, vdisk)?;
        versions_in(&db, vdisk.id)
    }

    /// Records version N+1 (image `file`, a differencing image over version N) in the
    /// maintenance state. Only one version may be in maintenance at a time.
    pub fn add_version(&self, vdisk: &str, file: &str, note: &str) -> Result<Version> {
        self.change("version.new", vdisk, &format!("file {file}: {note}"), |tx| {
            let vd = vdisk_in(tx, vdisk)?;
            let versions = versions_in(tx, vd.id)?;
            if let Some(open) = versions.iter().find(|v| v.state == VersionState::Maintenance) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "vDisk `{vdisk}` already has version {} in maintenance; promote or remove it first",
                        open.number
                    ),
                ));
            }
            let number = versions.last().map_or(0, |v| v.number + 1);
            unique(
                tx.execute(
                    "INSERT INTO versions (vdisk_id, number, file, state, note, created_at) VALUES (?1, ?2, ?3, 'maintenance', ?4, ?5)",
                    params![vd.id, number, file, note, now()],
                ),
                "version file",
                file,
            )?;
            Ok(versions_in(tx, vd.id)?.pop().expect("the version just inserted"))
        })
    }

    /// The newest version, if any, that a newer version does not depend on: the one
    /// [`Store::remove_newest_version`] would remove.
    fn newest(tx: &rusqlite::Connection, vdisk: &str) -> Result<(i64, Version)> {
        let vd = vdisk_in(tx, vdisk)?;
        let newest = versions_in(tx, vd.id)?
            .pop()
            .expect("every vDisk has a base");
        Ok((vd.id, newest))
    }

    /// Moves the newest version one step on: maintenance -> test -> production (the old
    /// production version becomes superseded). Returns the promoted version.
    pub fn promote(&self, vdisk: &str) -> Result<Version> {
        self.change("version.promote", vdisk, "", |tx| {
            let (id, newest) = Self::newest(tx, vdisk)?;
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
                tx.execute(
                    "UPDATE versions SET state = 'superseded' WHERE vdisk_id = ?1 AND state = 'production'",
                    [id],
                )?;
            }
            set_state(tx, id, newest.number, next)?;
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
        self.change("version.rollback", vdisk, "", |tx| {
            let vd = vdisk_in(tx, vdisk)?;
            let versions = versions_in(tx, vd.id)?;
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
            set_state(tx, vd.id, current.number, VersionState::Test)?;
            set_state(tx, vd.id, previous.number, VersionState::Production)?;
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
        self.change("version.remove", vdisk, "", |tx| {
            let (id, newest) = Self::newest(tx, vdisk)?;
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
            tx.execute(
                "DELETE FROM versions WHERE vdisk_id = ?1 AND number = ?2",
                params![id, newest.number],
            )?;
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
            |tx| {
                let vd = vdisk_in(tx, vdisk)?;
                let old: Option<String> = tx
                    .query_row(
                        "SELECT file FROM versions WHERE vdisk_id = ?1 AND number = ?2",
                        params![vd.id, number],
                        |r| r.get(0),
                    )
                    .optional()?;
                let old =
                    old.ok_or_else(|| Error::not_found("version", format!("{vdisk} {number}")))?;
                unique(
                    tx.execute(
                        "UPDATE versions SET file = ?3 WHERE vdisk_id = ?1 AND number = ?2",
                        params![vd.id, number, file],
                    ),
                    "version file",
                    file,
                )?;
                Ok(old)
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
