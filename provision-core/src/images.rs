//! The image files of vDisks: import a base, create a blank one, create version N+1
//! and private children. Files are written under a temporary name, flushed and renamed
//! before the store records them, so a crash leaves at most an unreferenced file
//! (reported by [`leftover_files`]), never a record without its file.

use std::path::{Path, PathBuf};

use vhd::{CreateOptions, Disk, Target};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{VDisk, Version};
use crate::store::{DATABASE_FILE, Store};

/// Suffix of files being written.
const PARTIAL: &str = ".partial";

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
    let partial = PathBuf::from(format!("{}{PARTIAL}", path.display()));
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
    let dir = store_dir(store)?;
    let src = vhd::open_disk(source, true)?;
    let relative = format!("{name}/v0.vhd");
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
    let dir = store_dir(store)?;
    let size = size.div_ceil(512) * 512;
    let relative = format!("{name}/v0.vhd");
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
    let relative = format!("{vdisk}/v{}.vhd", newest.number + 1);
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
        known.extend(store.versions(&vdisk.name)?.into_iter().map(|v| v.file));
    }
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let skip = [crate::session::CACHE_DIR, crate::session::PRIVATE_DIR];
        if !entry.path().is_dir() || skip.contains(&name.as_str()) {
            continue;
        }
        for file in std::fs::read_dir(entry.path()).map_err(io_error(dir))? {
            let file = file.map_err(io_error(dir))?;
            let relative = format!("{name}/{}", file.file_name().to_string_lossy());
            if !known.contains(&relative) && !relative.starts_with(DATABASE_FILE) {
                leftovers.push(relative);
            }
        }
    }
    leftovers.sort();
    Ok(leftovers)
}
