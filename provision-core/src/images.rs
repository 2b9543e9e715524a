//! The image files of vDisks: import a base, create a blank one, create version N+1
//! and private children. Files are written under a temporary name, flushed and renamed
//! before the store records them, so a crash leaves at most an unreferenced file
//! (reported by [`leftover_files`]), never a record without its file.

use std::path::{Path, PathBuf};

use vhd::{CreateOptions, Disk, Target};

use crate::error::{Error, ErrorKind, Result};
use crate::layout;
use crate::model::{VDisk, Version};
use crate::store::Store;
use crate::store::names::{NameOf, check_name};

fn store_dir(store: &Store) -> Result<&Path> {
    store
        .dir()
        .ok_or_else(|| Error::new(ErrorKind::Invalid, "vDisk files need a store in a folder"))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a new file at `dir/relative` through `write` (given the temporary path),
/// then renames it into place. Fails if the file exists already.
pub(crate) fn write_new(
    dir: &Path,
    relative: &str,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let path = dir.join(relative);
    if path.exists() {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("{} exists already", path.display()),
        ));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let partial = layout::partial(&path);
    let _ = std::fs::remove_file(&partial);
    if let Err(e) = write(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &path).map_err(io_error(&path))?;
    if let Some(parent) = path.parent() {
        // Make the rename itself durable.
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_error(parent))?;
    }
    Ok(path)
}

/// A new, empty file in the store's [`UPLOAD_DIR`](crate::layout::UPLOAD_DIR) for an
/// image of the future vDisk `name` that arrives over the network; it is imported with
/// [`import_vdisk`], then removed. Checks first that `name` could be imported, so that
/// nothing is received for a name that would be refused.
pub fn upload_file(store: &Store, name: &str) -> Result<(PathBuf, std::fs::File)> {
    check_name(NameOf::VDisk, name)?;
    if store.vdisk(name).is_ok() {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("vDisk `{name}` exists already"),
        ));
    }
    let token = crate::boot::Token::random();
    let path = store_dir(store)?.join(layout::upload_file(name, &token.to_string()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_error(&path))?;
    Ok((path, file))
}

/// Imports `source` (a raw file or any VHD, a chain included) as a new vDisk: its
/// content becomes version 0, a dynamic VHD in the store. `progress` gets (done, total)
/// bytes.
pub fn import_vdisk(
    store: &Store,
    name: &str,
    source: &Path,
    description: &str,
    progress: vhd::Progress<'_>,
) -> Result<VDisk> {
    // The name becomes a folder: checked before anything is opened or created.
    check_name(NameOf::VDisk, name)?;
    let dir = store_dir(store)?;
    let src = vhd::open_disk(source, true)?;
    let relative = layout::version_file(name, 0);
    write_new(dir, &relative, |tmp| {
        vhd::convert(src.as_ref(), tmp, Target::dynamic(), progress)?;
        Ok(())
    })?;
    let size = src.size().div_ceil(512) * 512;
    store
        .add_vdisk(name, size, description, &relative)
        .inspect_err(|_| {
            let _ = std::fs::remove_file(dir.join(&relative));
        })
}

/// Creates a new, empty vDisk of `size` bytes (rounded up to whole sectors).
pub fn create_vdisk(store: &Store, name: &str, size: u64, description: &str) -> Result<VDisk> {
    // The name becomes a folder: checked before anything is created.
    check_name(NameOf::VDisk, name)?;
    let dir = store_dir(store)?;
    let size = size.div_ceil(512) * 512;
    let relative = layout::version_file(name, 0);
    write_new(dir, &relative, |tmp| {
        CreateOptions::dynamic(size).create(tmp)?.flush()?;
        Ok(())
    })?;
    store
        .add_vdisk(name, size, description, &relative)
        .inspect_err(|_| {
            let _ = std::fs::remove_file(dir.join(&relative));
        })
}

/// Creates version N+1 of `vdisk`: a differencing image over version N, in the
/// maintenance state.
pub fn new_version(store: &Store, vdisk: &str, note: &str) -> Result<Version> {
    let dir = store_dir(store)?;
    let newest = store
        .versions(vdisk)?
        .pop()
        .expect("every vDisk has a base");
    let relative = layout::version_file(vdisk, newest.number + 1);
    let parent = dir.join(&newest.file);
    write_new(dir, &relative, |tmp| create_child(tmp, &parent))?;
    store.add_version(vdisk, &relative, note).inspect_err(|_| {
        let _ = std::fs::remove_file(dir.join(&relative));
    })
}

/// Creates the differencing image `child` over the image file `parent`, durably.
pub(crate) fn create_child(child: &Path, parent: &Path) -> Result<()> {
    // The locators must name the final path: create under it, the caller renames.
    vhd::create_differencing(child, parent)?.flush()?;
    Ok(())
}

/// Files in the store folder that no version record names (left by a crash during an
/// import or version creation), relative to the store folder. Private disks, caches
/// and the database are not reported.
pub fn leftover_files(store: &Store) -> Result<Vec<String>> {
    let dir = store_dir(store)?;
    let mut known = std::collections::HashSet::new();
    for vdisk in store.vdisks()? {
        for v in store.versions(&vdisk.name)? {
            known.insert(layout::boot_files_dir(&vdisk.name, v.number));
            known.insert(v.file);
        }
    }
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() || layout::is_device_dir(&name) {
            continue;
        }
        for file in std::fs::read_dir(entry.path()).map_err(io_error(dir))? {
            let file = file.map_err(io_error(dir))?;
            let relative = format!("{name}/{}", file.file_name().to_string_lossy());
            if !known.contains(&relative) && !layout::is_database(&relative) {
                leftovers.push(relative);
            }
        }
    }
    leftovers.sort();
    Ok(leftovers)
}

/// What [`clean_leftover_files`] did, by file relative to the store folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Leftover files deleted.
    pub removed: Vec<String>,
    /// Leftover files kept because a session or a private disk still needs them; a
    /// later clean deletes them once nothing does.
    pub kept: Vec<String>,
}

/// Deletes the [`leftover_files`] that nothing needs any more: it keeps those that
/// `in_use` reports (the running sessions: pass [`Sessions::file_in_use`], or use
/// [`Sessions::clean_leftover_files`]) and those in the chain of a private disk (a
/// private disk made over a version that was removed since still reads it).
///
/// Fails, deleting nothing, when a private disk cannot be opened to tell which files
/// it needs.
///
/// [`Sessions::file_in_use`]: crate::Sessions::file_in_use
/// [`Sessions::clean_leftover_files`]: crate::Sessions::clean_leftover_files
pub fn clean_leftover_files(store: &Store, in_use: &dyn Fn(&str) -> bool) -> Result<Cleanup> {
    let dir = store_dir(store)?;
    let leftovers = leftover_files(store)?;
    if leftovers.is_empty() {
        return Ok(Cleanup::default());
    }
    let needed = private_chains(dir)?;
    let mut cleanup = Cleanup::default();
    for file in leftovers {
        let path = dir.join(&file);
        let chained = path
            .canonicalize()
            .is_ok_and(|canonical| needed.contains(&canonical));
        if chained || in_use(&file) {
            tracing::info!(file, chained, "leftover file still in use: kept");
            cleanup.kept.push(file);
            continue;
        }
        if path.is_dir() {
            // The boot files copied out of a version that was removed since.
            std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
        } else {
            std::fs::remove_file(&path).map_err(io_error(&path))?;
        }
        tracing::info!(file, "leftover file deleted");
        cleanup.removed.push(file);
    }
    Ok(cleanup)
}

/// Canonical paths of every image the private disks of the store read through (their
/// parents, grandparents and so on).
fn private_chains(dir: &Path) -> Result<std::collections::HashSet<PathBuf>> {
    let mut needed = std::collections::HashSet::new();
    let private = dir.join(layout::PRIVATE_DIR);
    let devices = match std::fs::read_dir(&private) {
        Ok(devices) => devices,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(needed),
        Err(e) => return Err(io_error(&private)(e)),
    };
    let options = vhd::OpenOptions {
        root: Some(dir.to_path_buf()),
        ..vhd::OpenOptions::new(true)
    };
    for device in devices {
        let device = device.map_err(io_error(&private))?.path();
        if !device.is_dir() {
            continue;
        }
        for disk in std::fs::read_dir(&device).map_err(io_error(&device))? {
            let disk = disk.map_err(io_error(&device))?.path();
            if disk.extension().is_none_or(|e| e != "vhd") {
                continue;
            }
            let image = options.open(&disk).map_err(|e| {
                Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "cannot tell which files the private disk {} needs ({e}); nothing was deleted",
                        disk.display()
                    ),
                )
            })?;
            for layer in image.chain().into_iter().skip(1) {
                if let Some(canonical) = layer.path().and_then(|p| p.canonicalize().ok()) {
                    needed.insert(canonical);
                }
            }
        }
    }
    Ok(needed)
}
