//! Kernels and initrds of vDisk versions: found inside the version's image and copied
//! once into the store, so that a device boots the kernel of the very version whose
//! root it mounts.
//!
//! - [`partitions`]: MBR and GPT partition tables, parsed from bytes;
//! - [`names`]: where Linux keeps kernel and initrd (Debian's names, `/boot/vmlinuz-<ver>`);
//! - [`find_in_image`]: each partition (or the whole disk) read as ext2/3/4 (`ext4-view`)
//!   or FAT (`fatfs`), read-only, the first with a kernel and initrd wins;
//! - [`extract_boot_files`]: the store's copy of a version's files (`layout::boot_files_dir`),
//!   made on first need and made again when the version's file changed.
//!
//! Corrupt or unknown images give an error that says what was wrong, or `None`.
//!
//! ```
//! use std::sync::Arc;
//! use provision_core::boot_files::find_in_image;
//! // A disk of zeros: no partition table, no file system, no kernel.
//! let zeros = Arc::new(vhd::MemStorage::new(vec![0; 1 << 20]));
//! let disk: Arc<dyn vhd::Disk> = Arc::new(vhd::RawDisk::new(zeros).unwrap());
//! assert_eq!(find_in_image(&disk).unwrap(), None);
//! ```

pub mod names;
pub mod partitions;
mod store_copy;
mod volume;

use std::sync::Arc;

use vhd::Disk;

pub use store_copy::{BootFiles, extract_boot_files};
pub use volume::Found;

use crate::error::{Error, ErrorKind, Result};
use partitions::{HEAD_LEN, partition_table};

/// The kernel and initrd of the image `disk`: the first volume (in table order, the
/// whole disk without a table) whose file system holds one of [`names::candidates`].
/// `Ok(None)` when no volume holds one; an error when the partition table is corrupt,
/// or when no volume holds one and some volume's file system could not be read.
pub fn find_in_image(disk: &Arc<dyn Disk>) -> Result<Option<Found>> {
    let size = disk.size();
    let mut head = vec![0; (HEAD_LEN as u64).min(size) as usize];
    disk.read_at(&mut head, 0)?;
    let table = partition_table(&head, size)?;
    let mut problems = Vec::new();
    for part in table.volumes(size) {
        match volume::Volume::new(disk.clone(), part).find() {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => {}
            Err(e) => problems.push(format!("partition {}: {e}", part.number)),
        }
    }
    // Unknown file systems (swap, LVM, NTFS) are no error while another volume reads.
    if !problems.is_empty() && problems.len() == table.volumes(size).len() {
        let has_fs = problems
            .iter()
            .any(|p| !p.contains("neither ext2/3/4 nor FAT"));
        if has_fs {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("no kernel found: {}", problems.join("; ")),
            ));
        }
    }
    Ok(None)
}
