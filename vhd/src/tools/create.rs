//! Creating fixed, dynamic and differencing images (SPECS §2.1–2.6).
//!
//! Sizes: the footer keeps the exact size asked for, with the geometry of the spec's
//! algorithm, and the creator application `win `, one of the creators for which every
//! reader (Windows, VirtualBox, libvhdi, and qemu of every version) takes the current
//! size rather than the CHS size (SPECS §2.4). Layout of sparse images: footer copy at
//! 0, header at 512, locator data (differencing), BAT, then blocks as they are written.

use std::path::Path;
use std::sync::Arc;

use crate::engine::disk::Disk;
use crate::engine::image::{ChecksumPolicy, Image, SizePolicy};
use crate::engine::storage::{FileStorage, Storage};
use crate::error::{Error, Result};
use crate::format::bat::emit_bat;
use crate::format::footer::{
    DiskType, FOOTER_LEN, FORMAT_VERSION, Footer, Geometry, MAX_DISK_SIZE, NO_DATA_OFFSET,
};
use crate::format::header::{
    DEFAULT_BLOCK_SIZE, DynamicHeader, HEADER_LEN, HEADER_VERSION, LOCATOR_SLOTS, MAX_BLOCK_SIZE,
};
use crate::format::ids::{new_uuid, vhd_now};
use crate::format::locator::{ParentLocator, PlatformCode, encode_utf16le};

/// Creator application we write (see the module docs for why).
pub const CREATOR_APP: [u8; 4] = *b"win ";
/// Creator version we write.
pub const CREATOR_VERSION: u32 = 0x0006_0001;
/// Creator host OS we write (`Wi2k`, what every writer uses).
pub const CREATOR_HOST_OS: u32 = 0x5769_326b;

/// What a differencing child records of its parent.
#[derive(Debug, Clone)]
pub struct ParentLink {
    /// The parent's footer unique id.
    pub unique_id: [u8; 16],
    /// The parent's modification time stamp (0: not recorded).
    pub time_stamp: u32,
    /// The parent's name, written as the header's parent unicode name.
    pub unicode_name: String,
    /// Absolute path for the W2ku locator.
    pub absolute: Option<String>,
    /// Path relative to the child for the W2ru locator (e.g. `.\base.vhd`).
    pub relative: Option<String>,
    /// The parent's virtual size, which the child takes.
    pub size: u64,
}

/// How to create an image.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Virtual size in bytes (a multiple of 512).
    pub size: u64,
    /// Fixed, dynamic or differencing.
    pub disk_type: DiskType,
    /// Block size of sparse images (power of two, 512 B to 256 MiB).
    pub block_size: u32,
    /// Unique id; random when `None`.
    pub unique_id: Option<[u8; 16]>,
}

impl CreateOptions {
    /// A fixed image of `size` bytes.
    pub fn fixed(size: u64) -> Self {
        CreateOptions {
            size,
            disk_type: DiskType::Fixed,
            block_size: DEFAULT_BLOCK_SIZE,
            unique_id: None,
        }
    }

    /// A dynamic image of `size` bytes with 2 MiB blocks.
    pub fn dynamic(size: u64) -> Self {
        CreateOptions {
            disk_type: DiskType::Dynamic,
            ..Self::fixed(size)
        }
    }

    /// Sets the block size.
    pub fn block_size(mut self, block_size: u32) -> Self {
        self.block_size = block_size;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.size == 0 || !self.size.is_multiple_of(512) || self.size > MAX_DISK_SIZE {
            return Err(Error::InvalidInput(format!(
                "size {} must be a non-zero multiple of 512 up to {MAX_DISK_SIZE}",
                self.size
            )));
        }
        let bs = self.block_size;
        if bs < 512 || !bs.is_power_of_two() || bs > MAX_BLOCK_SIZE {
            return Err(Error::InvalidInput(format!(
                "block size {bs} must be a power of two from 512 to {MAX_BLOCK_SIZE}"
            )));
        }
        Ok(())
    }

    fn footer(&self, disk_type: DiskType, size: u64) -> Footer {
        Footer {
            features: 2,
            format_version: FORMAT_VERSION,
            data_offset: if disk_type == DiskType::Fixed {
                NO_DATA_OFFSET
            } else {
                FOOTER_LEN as u64
            },
            time_stamp: vhd_now(),
            creator_app: CREATOR_APP,
            creator_version: CREATOR_VERSION,
            creator_host_os: CREATOR_HOST_OS,
            original_size: size,
            current_size: size,
            geometry: Geometry::for_size(size),
            disk_type,
            checksum: 0,
            unique_id: self.unique_id.unwrap_or_else(new_uuid),
            saved_state: 0,
        }
    }

    /// Writes a new image onto `storage` (which should be empty) and opens it. A
    /// differencing image needs its `parent` (already open) and the link it records.
    pub fn create_on(
        &self,
        storage: Arc<dyn Storage>,
        parent: Option<(Arc<Image>, ParentLink)>,
    ) -> Result<Image> {
        let io = |what: &'static str| move |e| Error::io(format!("creating image: {what}"), e);
        let (disk_type, size, link, parent_image) = match parent {
            Some((img, link)) => (DiskType::Differencing, link.size, Some(link), Some(img)),
            None if self.disk_type == DiskType::Differencing => {
                return Err(Error::InvalidInput(
                    "a differencing image needs a parent".into(),
                ));
            }
            None => (self.disk_type, self.size, None, None),
        };
        CreateOptions {
            size,
            ..self.clone()
        }
        .validate()?;
        storage.set_len(0).map_err(io("truncate"))?;
        let footer = self.footer(disk_type, size);
        let fbytes = footer.to_bytes();
        if disk_type == DiskType::Fixed {
            storage.set_len(size).map_err(io("data"))?;
            storage.write_at(&fbytes, size).map_err(io("footer"))?;
        } else {
            let entries = u32::try_from(size.div_ceil(u64::from(self.block_size)))
                .map_err(|_| Error::InvalidInput("too many blocks".into()))?;
            let mut locators = [ParentLocator::parse(&[0; 24]); LOCATOR_SLOTS];
            let mut next = (FOOTER_LEN + HEADER_LEN) as u64;
            let mut locator_data = Vec::new();
            if let Some(link) = &link {
                let paths = [
                    (PlatformCode::W2ku, &link.absolute),
                    (PlatformCode::W2ru, &link.relative),
                ];
                for (slot, (code, path)) in paths.into_iter().enumerate() {
                    let Some(path) = path else { continue };
                    let data = encode_utf16le(path);
                    let space = (data.len() as u64).div_ceil(512).max(1) * 512;
                    locators[slot] = ParentLocator {
                        code,
                        data_space: space as u32,
                        data_length: data.len() as u32,
                        data_offset: next,
                    };
                    locator_data.push((next, data));
                    next += space;
                }
            }
            let header = DynamicHeader {
                data_offset: u64::MAX,
                table_offset: next,
                header_version: HEADER_VERSION,
                max_table_entries: entries,
                block_size: self.block_size,
                checksum: 0,
                parent_unique_id: link.as_ref().map_or([0; 16], |l| l.unique_id),
                parent_time_stamp: link.as_ref().map_or(0, |l| l.time_stamp),
                parent_unicode_name: link
                    .as_ref()
                    .map_or_else(String::new, |l| l.unicode_name.clone()),
                locators,
            };
            let bat = emit_bat(&vec![crate::format::bat::UNUSED; entries as usize]);
            storage.write_at(&fbytes, 0).map_err(io("footer copy"))?;
            storage
                .write_at(&header.to_bytes()[..], FOOTER_LEN as u64)
                .map_err(io("dynamic header"))?;
            for (at, data) in &locator_data {
                storage.write_at(data, *at).map_err(io("parent locator"))?;
            }
            storage.write_at(&bat, next).map_err(io("BAT"))?;
            storage
                .write_at(&fbytes, next + bat.len() as u64)
                .map_err(io("footer"))?;
        }
        storage.flush().map_err(io("flush"))?;
        Image::from_storage(
            storage,
            false,
            ChecksumPolicy::Strict,
            SizePolicy::CurrentSize,
            parent_image,
        )
    }

    /// Creates a fixed or dynamic image file at `path` (replacing any file there).
    pub fn create(&self, path: &Path) -> Result<Image> {
        let storage = FileStorage::create(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let img = self.create_on(Arc::new(storage), None)?;
        Ok(img.with_path(path))
    }
}

/// The link a child made at `child` records for the parent image file at `parent_path`:
/// unique id, file modification time, name, W2ku (absolute) and W2ru (relative) paths.
pub fn parent_link(parent: &Image, parent_path: &Path, child: &Path) -> Result<ParentLink> {
    let abs = parent_path
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving {}", parent_path.display()), e))?;
    let child_dir = child
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving the folder of {}", child.display()), e))?;
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let relative = relative_path(&child_dir, &abs).map(|r| format!(".\\{}", r.replace('/', "\\")));
    let time_stamp = std::fs::metadata(&abs)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(parent.footer().time_stamp, |d| {
            u32::try_from(
                d.as_secs()
                    .saturating_sub(crate::format::footer::VHD_EPOCH_UNIX),
            )
            .unwrap_or(0)
        });
    Ok(ParentLink {
        unique_id: parent.footer().unique_id,
        time_stamp,
        unicode_name: name,
        absolute: Some(abs.to_string_lossy().into_owned()),
        relative,
        size: parent.size(),
    })
}

fn relative_path(from_dir: &Path, to: &Path) -> Option<String> {
    let from: Vec<_> = from_dir.components().collect();
    let to_c: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to_c).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = (common..from.len()).map(|_| "..".to_owned()).collect();
    parts.extend(
        to_c[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Creates a differencing image at `child` whose parent is the image file at
/// `parent_path` (opened read-only with its own chain). Block size follows the parent
/// when it is sparse.
pub fn create_differencing(child: &Path, parent_path: &Path) -> Result<Image> {
    let parent = Arc::new(crate::engine::chain::OpenOptions::new(true).open(parent_path)?);
    create_differencing_on(child, parent_path, parent)
}

/// Like [`create_differencing`] with the parent already open.
pub fn create_differencing_on(
    child: &Path,
    parent_path: &Path,
    parent: Arc<Image>,
) -> Result<Image> {
    // The child is created empty: it must be no image of the chain it is to sit on.
    let chain = parent.chain();
    let chain_paths = chain.iter().filter_map(|i| i.path());
    crate::tools::overwrite::refuse_overwrite(child, chain_paths.chain([parent_path]))?;
    let link = parent_link(&parent, parent_path, child)?;
    let block_size = parent.header().map_or(DEFAULT_BLOCK_SIZE, |h| h.block_size);
    let storage = FileStorage::create(child)
        .map_err(|e| Error::io(format!("creating {}", child.display()), e))?;
    let opts = CreateOptions {
        size: link.size,
        disk_type: DiskType::Differencing,
        block_size,
        unique_id: None,
    };
    Ok(opts
        .create_on(Arc::new(storage), Some((parent, link)))?
        .with_path(child))
}
