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
