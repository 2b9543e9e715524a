//! The store's folder layout: the one place that knows where a file of the store lives.
//!
//! ```text
//!   <store>/
//!     provision.db (+ -wal, -shm)         DATABASE_FILE: the SQLite database
//!     <vdisk>/v<N>.vhd                    version N of a vDisk (v0: its base)
//!     <vdisk>/v<N>.vhd.merge              a merge in progress (renamed over v<N>.vhd)
//!     <vdisk>/v<N>.boot/                  kernel and initrd found in version N's image:
//!       vmlinuz, initrd.img, found          the files and what they were made from
//!     <any>.partial                       a file being written (renamed when complete)
//!     cache/                              CACHE_DIR: RAM write caches' spill files
//!     cache/<mac>/<vdisk>.boot<B>.vhd     the durable write cache of boot B on a vDisk
//!     cache/<mac>/<vdisk>.boot<B>.expired the mark an expired durable write cache leaves
//!     private/<mac>/<vdisk>.vhd           PRIVATE_DIR: a device's private disk
//!     uploads/<vdisk>.<token>.partial     UPLOAD_DIR: an image arriving over the API
//! ```
//!
//! `<mac>` is the device's MAC without colons (`525400000001`). Paths are built here as
//! strings relative to the store folder (what the database records) or joined onto
//! it; no other module writes one of these names.

use std::path::{Path, PathBuf};

use crate::mac::Mac;

/// The database file's name inside the store folder.
pub const DATABASE_FILE: &str = "provision.db";
/// Folder of the store holding write-cache spill files and durable write caches.
pub const CACHE_DIR: &str = "cache";
/// Folder of the store holding private per-device disks.
pub const PRIVATE_DIR: &str = "private";
/// The store's folder of images being uploaded through the API (partial files until
/// imported; a crash leaves them for `store check --clean`).
pub const UPLOAD_DIR: &str = "uploads";
/// The store's own folders, which no vDisk may be named after.
pub const RESERVED_DIRS: [&str; 3] = [CACHE_DIR, PRIVATE_DIR, UPLOAD_DIR];

/// Suffix of files being written (renamed into place when complete).
const PARTIAL: &str = ".partial";
/// Suffix of a merge's output before it replaces the version's file.
const MERGING: &str = ".merge";

/// The database file of the store in `dir`.
pub fn database(dir: &Path) -> PathBuf {
    dir.join(DATABASE_FILE)
}

/// True for the database file and SQLite's companions (`-wal`, `-shm`, `-journal`),
/// relative to the store folder.
pub fn is_database(relative: &str) -> bool {
    relative.starts_with(DATABASE_FILE)
}

/// Version `number` of `vdisk`, relative to the store folder: `<vdisk>/v<N>.vhd`.
///
/// ```
/// assert_eq!(provision_core::layout::version_file("win11", 3), "win11/v3.vhd");
/// ```
pub fn version_file(vdisk: &str, number: u32) -> String {
    format!("{vdisk}/v{number}.vhd")
}

/// The folder of the kernel and initrd copied out of version `number` of `vdisk`,
/// relative to the store folder: `<vdisk>/v<N>.boot`.
///
/// ```
/// use provision_core::layout;
/// assert_eq!(layout::boot_files_dir("lab", 1), "lab/v1.boot");
/// assert_eq!(layout::BOOT_KERNEL, "vmlinuz");
/// ```
pub fn boot_files_dir(vdisk: &str, number: u32) -> String {
    format!("{vdisk}/v{number}.boot")
}

/// The kernel's file name in a [`boot_files_dir`] (and in per-boot paths).
pub const BOOT_KERNEL: &str = "vmlinuz";
/// The initrd's file name in a [`boot_files_dir`] (and in per-boot paths).
pub const BOOT_INITRD: &str = "initrd.img";
/// The file in a [`boot_files_dir`] that says which version file the copies were made
/// from and where in its image they were found; written last.
pub const BOOT_FOUND: &str = "found";

/// Where a merge of the version in `file` (relative) is written before it replaces it.
pub fn merge_output(file: &str) -> String {
    format!("{file}{MERGING}")
}

/// The temporary name `path` is written under until it is complete.
pub fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(PARTIAL);
    PathBuf::from(name)
}

/// A file for an upload of the future vDisk `vdisk`, relative to the store folder:
/// `uploads/<vdisk>.<unique>.partial`.
pub fn upload_file(vdisk: &str, unique: &str) -> String {
    format!("{UPLOAD_DIR}/{vdisk}.{unique}{PARTIAL}")
}

/// The store's folders that hold no vDisk (skipped when looking for leftover files).
pub fn is_device_dir(name: &str) -> bool {
    name == CACHE_DIR || name == PRIVATE_DIR
}

fn mac_dir(mac: Mac) -> String {
    mac.to_string().replace(':', "")
}

/// The folder of a device's durable write caches, relative to the store:
/// `cache/<mac>`.
pub fn cache_folder(mac: Mac) -> String {
    format!("{CACHE_DIR}/{}", mac_dir(mac))
}

/// The durable write cache of boot `boot` of the device with `mac` on `vdisk`,
/// relative to the store: `cache/<mac>/<vdisk>.boot<B>.vhd`.
///
/// ```
/// use provision_core::{Mac, layout};
/// let mac = Mac([0x52, 0x54, 0, 0, 0, 1]);
/// assert_eq!(layout::cache_file(mac, "lab", 7), "cache/525400000001/lab.boot7.vhd");
/// assert!(layout::is_cache_of_boot("lab.boot7.vhd", 7));
/// assert!(!layout::is_cache_of_boot("lab.boot17.vhd", 7));
/// ```
pub fn cache_file(mac: Mac, vdisk: &str, boot: u64) -> String {
    format!("{}/{vdisk}{}", cache_folder(mac), cache_suffix(boot))
}

fn cache_suffix(boot: u64) -> String {
    format!(".boot{boot}.vhd")
}

/// True when `file_name` (in a device's cache folder) is a durable write cache of boot
/// `boot` (the dot before `boot` makes `.boot11.vhd` no cache of boot 1).
pub fn is_cache_of_boot(file_name: &str, boot: u64) -> bool {
    file_name.ends_with(&cache_suffix(boot))
}

/// The mark an expired durable write cache `file` leaves, so that a reconnect of its
/// boot is refused also after a restart: `<vdisk>.boot<B>.expired` beside it.
pub fn expired_mark(file: &Path) -> PathBuf {
    file.with_extension("expired")
}

/// The private disk of the device with `mac` for `vdisk`, relative to the store:
/// `private/<mac>/<vdisk>.vhd`.
///
/// ```
/// use provision_core::{Mac, layout};
/// let mac = Mac([0x52, 0x54, 0, 0, 0, 1]);
/// assert_eq!(layout::private_disk(mac, "lab"), "private/525400000001/lab.vhd");
/// ```
pub fn private_disk(mac: Mac, vdisk: &str) -> String {
    format!("{PRIVATE_DIR}/{}/{vdisk}.vhd", mac_dir(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_file_belongs_to_exactly_one_boot() {
        let mac = Mac([0x52, 0x54, 0, 0, 0, 1]);
        let file = cache_file(mac, "lab", 1);
        let name = file.rsplit('/').next().unwrap();
        assert!(is_cache_of_boot(name, 1));
        for other in [0, 11, 21] {
            assert!(!is_cache_of_boot(name, other), "{other}");
        }
        assert!(!is_cache_of_boot("lab.boot11.vhd", 1));
        assert!(!is_cache_of_boot("lab.boot1.expired", 1));
        assert_eq!(
            expired_mark(Path::new(&file)),
            Path::new("cache/525400000001/lab.boot1.expired")
        );
    }

    #[test]
    fn versions_and_partials() {
        assert_eq!(version_file("os", 0), "os/v0.vhd");
        assert_eq!(merge_output("os/v2.vhd"), "os/v2.vhd.merge");
        assert_eq!(
            partial(Path::new("/s/os/v1.vhd")),
            Path::new("/s/os/v1.vhd.partial")
        );
        assert_eq!(upload_file("os", "ab"), "uploads/os.ab.partial");
        assert!(is_database("provision.db-wal"));
        assert!(!is_database("os/v0.vhd"));
    }
}
