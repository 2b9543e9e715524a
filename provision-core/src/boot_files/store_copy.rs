//! The store's copy of a version's kernel and initrd (`<vdisk>/v<N>.boot/`), made from
//! the version's image on first need, and again whenever the version's file changed
//! since (a maintenance version being written, a merge that replaced it): the `found`
//! file records the version file's identity (inode, length, modification time) the
//! copies were made from, so a copy is never older than its version.
//!
//! Lazily, not at create or promote: every way a version comes to be (import, new
//! version, merge, a maintenance device writing it) is then covered by one rule, and a
//! version nobody boots costs nothing. The first boot of a version waits for the copy
//! (the kernel and initrd read through the chain once).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::find_in_image;
use crate::error::{Error, Result};
use crate::layout::{self, BOOT_FOUND, BOOT_INITRD, BOOT_KERNEL};

/// One copy at a time in this process: two devices booting a new version at once
/// wait for the one copy.
static COPYING: Mutex<()> = Mutex::new(());

/// A version's kernel and initrd in the store, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// The kernel's copy.
    pub kernel: PathBuf,
    /// The initrd's copy.
    pub initrd: PathBuf,
    /// Where the kernel was found: `p<partition>:<path>` (`p0`: the whole disk).
    pub kernel_source: String,
    /// Where the initrd was found.
    pub initrd_source: String,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The identity of the version file the copies are made from.
fn stamp(version: &Path) -> Result<String> {
    let m = std::fs::metadata(version).map_err(io_error(version))?;
    Ok(format!(
        "stamp {} {} {}.{:09}",
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// What the `found` file says: `None` when it was made from another stamp.
fn recorded(found: &str, stamp: &str) -> Option<Option<(String, String)>> {
    let mut lines = found.lines();
    if lines.next() != Some(stamp) {
        return None;
    }
    let kernel = lines.next()?;
    if kernel.starts_with("none") {
        return Some(None);
    }
    let kernel = kernel.strip_prefix("kernel ")?.to_owned();
    let initrd = lines.next()?.strip_prefix("initrd ")?.to_owned();
    Some(Some((kernel, initrd)))
}

/// The kernel and initrd of version `number` of `vdisk`, whose file is `version_file`
/// (relative to `store_dir`), copied into `<vdisk>/v<N>.boot/` unless a copy of the
/// file as it is now is there already. `Ok(None)`: the image holds no kernel and initrd
/// (or could not be read as a disk with one: the reason is logged and recorded, and
/// the configured paths boot); errors are the store folder's.
pub fn extract_boot_files(
    store_dir: &Path,
    vdisk: &str,
    number: u32,
    version_file: &str,
) -> Result<Option<BootFiles>> {
    let version = store_dir.join(version_file);
    let dir = store_dir.join(layout::boot_files_dir(vdisk, number));
    let files = |(kernel_source, initrd_source): (String, String)| BootFiles {
        kernel: dir.join(BOOT_KERNEL),
        initrd: dir.join(BOOT_INITRD),
        kernel_source,
        initrd_source,
    };
    let found_file = dir.join(BOOT_FOUND);
    let _one = COPYING.lock().unwrap_or_else(|e| e.into_inner());
    let stamp = stamp(&version)?;
    if let Some(known) = std::fs::read_to_string(&found_file)
        .ok()
        .and_then(|text| recorded(&text, &stamp))
    {
        return Ok(known.map(files));
    }
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let found = vhd::open_disk(&version, true)
        .map_err(Error::from)
        .and_then(|disk: Arc<dyn vhd::Disk>| find_in_image(&disk));
    let (record, result) = match found {
        Ok(Some(found)) => {
            write_renamed(&dir.join(BOOT_KERNEL), &found.kernel)?;
            write_renamed(&dir.join(BOOT_INITRD), &found.initrd)?;
            let sources = (
                format!("p{}:{}", found.partition, found.kernel_path),
                format!("p{}:{}", found.partition, found.initrd_path),
            );
            tracing::info!(vdisk, version = number, kernel = %sources.0, initrd = %sources.1,
                kernel_bytes = found.kernel.len(), initrd_bytes = found.initrd.len(),
                "boot files copied out of the version's image");
            (
                format!("kernel {}\ninitrd {}\n", sources.0, sources.1),
                Some(files(sources)),
            )
        }
        Ok(None) => {
            tracing::info!(
                vdisk,
                version = number,
                "no kernel and initrd in the version's image"
            );
            ("none\n".to_owned(), None)
        }
        Err(e) => {
            tracing::warn!(vdisk, version = number, error = %e,
                "the version's image could not be searched for a kernel: configured paths boot");
            (
                format!("none: {}\n", e.to_string().replace('\n', " ")),
                None,
            )
        }
    };
    if result.is_none() {
        for name in [BOOT_KERNEL, BOOT_INITRD] {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    write_renamed(&found_file, format!("{stamp}\n{record}").as_bytes())?;
    Ok(result)
}

/// Writes `bytes` to `path` under its partial name, makes them durable, then renames.
fn write_renamed(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = layout::partial(path);
    let mut file = std::fs::File::create(&partial).map_err(io_error(&partial))?;
    file.write_all(bytes).map_err(io_error(&partial))?;
    file.sync_all().map_err(io_error(&partial))?;
    std::fs::rename(&partial, path).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vhd::Disk;

    #[test]
    fn a_record_of_another_stamp_is_not_used() {
        let text = "stamp 1 2 3.000000004\nkernel p1:/vmlinuz\ninitrd p1:/initrd.img\n";
        assert_eq!(
            recorded(text, "stamp 1 2 3.000000004"),
            Some(Some(("p1:/vmlinuz".into(), "p1:/initrd.img".into())))
        );
        assert_eq!(recorded(text, "stamp 1 2 3.000000005"), None);
        assert_eq!(recorded("stamp 9\nnone: bad\n", "stamp 9"), Some(None));
        assert_eq!(recorded("stamp 9\nkernel x\n", "stamp 9"), None);
    }

    #[test]
    fn an_image_without_a_kernel_is_recorded_as_none_and_copied_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lab")).unwrap();
        let file = dir.path().join("lab/v0.vhd");
        vhd::CreateOptions::dynamic(4 << 20)
            .create(&file)
            .unwrap()
            .flush()
            .unwrap();
        assert_eq!(
            extract_boot_files(dir.path(), "lab", 0, "lab/v0.vhd").unwrap(),
            None
        );
        let found = std::fs::read_to_string(dir.path().join("lab/v0.boot/found")).unwrap();
        assert!(
            found.starts_with("stamp ") && found.ends_with("\nnone\n"),
            "{found}"
        );
        // A raw image whose MBR names a partition past its end: recorded with the
        // reason, still no error for the boot (the configured paths boot).
        let mut raw = vec![0u8; 1 << 20];
        raw[446 + 4] = 0x83;
        raw[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        raw[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
        raw[510..512].copy_from_slice(&[0x55, 0xaa]);
        std::fs::write(&file, raw).unwrap();
        assert_eq!(
            extract_boot_files(dir.path(), "lab", 0, "lab/v0.vhd").unwrap(),
            None
        );
        let found = std::fs::read_to_string(dir.path().join("lab/v0.boot/found")).unwrap();
        assert!(
            found.contains("\nnone: ") && found.contains("past the disk"),
            "{found}"
        );
    }
}
