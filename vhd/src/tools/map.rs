//! Where an image's data is: which ranges read data, from which file of the chain, and
//! which read zeros (what `vhd map` prints).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::chain::{OpenOptions, looks_like_vhd};
use crate::engine::disk::{Disk, RawDisk};
use crate::engine::storage::FileStorage;
use crate::error::{Error, Result};

/// An image's allocation map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// The image's files: the image itself, then its parents (a raw file is one).
    pub files: Vec<PathBuf>,
    /// `(offset, length, depth)` runs in order and without gaps; `depth` indexes
    /// `files`, `None` reads zeros.
    pub runs: Vec<(u64, u64, Option<usize>)>,
}

/// The map of a raw file (all data, in itself) or of a VHD and its chain.
pub fn map_file(path: &Path) -> Result<Map> {
    let storage = FileStorage::open(path, true)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    if looks_like_vhd(&storage)? {
        let image = OpenOptions::new(true).open(path)?;
        let files = image
            .chain()
            .iter()
            .map(|i| i.path().map(Path::to_path_buf).unwrap_or_default())
            .collect();
        let runs = image.layers(0, image.size())?;
        return Ok(Map { files, runs });
    }
    let disk = RawDisk::new(Arc::new(storage))?;
    Ok(Map {
        files: vec![path.to_path_buf()],
        runs: vec![(0, disk.size(), Some(0))],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::create::CreateOptions;

    #[test]
    fn raw_files_are_all_data_and_new_images_all_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, vec![1u8; 4096]).unwrap();
        let map = map_file(&raw).unwrap();
        assert_eq!(map.files, vec![raw]);
        assert_eq!(map.runs, vec![(0, 4096, Some(0))]);
        let vhd = dir.path().join("disk.vhd");
        CreateOptions::dynamic(4 << 20).create(&vhd).unwrap();
        let map = map_file(&vhd).unwrap();
        assert_eq!(map.files, vec![vhd]);
        assert!(map.runs.iter().all(|r| r.2.is_none()), "{map:?}");
        assert_eq!(map.runs.iter().map(|r| r.1).sum::<u64>(), 4 << 20);
        assert!(map_file(&dir.path().join("missing")).is_err());
    }
}
