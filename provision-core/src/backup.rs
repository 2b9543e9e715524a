//! A backup of a store that is being served: the database as of one moment, and the
//! files it names, in a new folder that opens as a store.
//!
//! ```text
//!   1. database     SQLite's VACUUM INTO: one consistent copy, others keep working
//!   2. versions     every version file the copy names, parents first; sealed versions
//!                   never change, so a copy is exact
//!   3. private      every private disk the copy names (persistent device data)
//! ```
//!
//! Files that may be written while they are copied (a version in maintenance, a private
//! disk of a running device) are copied until two looks at the file agree before and
//! after the copy and the copy checks clean (`vhd::check_file`), at most
//! [`ATTEMPTS`] times; a file still changing is left out and named, so a backup never
//! holds a torn image. Write caches are not copied: they are dropped at the next boot
//! anyway.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result};
use crate::layout;
use crate::model::{Mode, VersionState};
use crate::store::Store;

/// Copies of a file that changes while it is copied, before it is left out.
pub const ATTEMPTS: u32 = 3;

/// What a backup holds, and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Files copied, relative to the store folder (the database first).
    pub copied: Vec<String>,
    /// Files left out, with why.
    pub skipped: Vec<(String, String)>,
    /// Bytes copied.
    pub bytes: u64,
}

/// Copies the store `store` (in a folder, possibly served right now) into `dest`, a
/// folder that does not exist yet or is empty. `progress` gets (files done, files in
/// all) after each file.
///
/// # Errors
///
/// `Conflict` when `dest` holds anything; `Invalid` for a store in memory; I/O errors
/// of the copy (the partial backup is left for inspection).
pub fn backup_store(
    store: &Store,
    dest: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<BackupReport> {
    let src = store.dir().ok_or_else(|| {
        Error::new(
            ErrorKind::Invalid,
            "only a store in a folder can be backed up",
        )
    })?;
    if fs::read_dir(dest).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{} is not empty: a backup goes into a new folder",
                dest.display()
            ),
        ));
    }
    fs::create_dir_all(dest).map_err(io(dest))?;
    let mut report = BackupReport::default();
    store.snapshot_database(&layout::database(dest))?;
    report.copied.push(layout::DATABASE_FILE.to_owned());

    // What the copy names, as of the snapshot: (file, may change while copied).
    let copy = Store::open(dest)?;
    let mut files: Vec<(String, bool)> = Vec::new();
    for vdisk in copy.vdisks()? {
        let mut versions = copy.versions(&vdisk.name)?;
        versions.sort_by_key(|v| v.number);
        files.extend(
            versions
                .into_iter()
                .map(|v| (v.file, v.state == VersionState::Maintenance)),
        );
    }
    for device in copy.devices()? {
        for a in copy.assignments(&device.name)? {
            let file = layout::private_disk(device.mac, &a.vdisk);
            if a.mode == Mode::Private && src.join(&file).exists() {
                files.push((file, true));
            }
        }
    }
    drop(copy);
    let total = files.len() as u64;
    for (done, (file, live)) in files.into_iter().enumerate() {
        match copy_file(&src.join(&file), &dest.join(&file), live)? {
            Ok(bytes) => {
                report.bytes += bytes;
                report.copied.push(file);
            }
            Err(why) => report.skipped.push((file, why)),
        }
        progress(done as u64 + 1, total);
    }
    Ok(report)
}

/// What identifies one state of a file.
fn look(path: &Path) -> Result<(u64, Option<SystemTime>)> {
    let meta = fs::metadata(path).map_err(io(path))?;
    Ok((meta.len(), meta.modified().ok()))
}

/// Copies `from` to `to` (through a partial name); `Ok(Err(why))` when a `live` file
/// kept changing or its copies did not check clean.
fn copy_file(from: &Path, to: &Path, live: bool) -> Result<std::result::Result<u64, String>> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let partial = layout::partial(to);
    let mut why = String::new();
    for _ in 0..ATTEMPTS {
        let before = look(from)?;
        let bytes = fs::copy(from, &partial).map_err(io(from))?;
        if !live {
            fs::rename(&partial, to).map_err(io(to))?;
            return Ok(Ok(bytes));
        }
        if look(from)? != before {
            why = "written to while it was copied (its device is running)".into();
            continue;
        }
        let check = vhd::check_file(&partial);
        if !check.is_consistent() {
            why = format!(
                "the copy does not check clean: {}",
                check
                    .problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            continue;
        }
        fs::rename(&partial, to).map_err(io(to))?;
        return Ok(Ok(bytes));
    }
    let _ = fs::remove_file(&partial);
    Ok(Err(format!(
        "{why}, {ATTEMPTS} times; back it up when its device is off"
    )))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}
