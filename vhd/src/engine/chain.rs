//! Opening images from files: parent resolution of differencing chains (SPECS §2.6),
//! the resolver hook, and [`open_disk`] for raw files and VHDs alike.
//!
//! Parent search order: a caller's [`ParentResolver`], then the W2ru locator (relative
//! to the child's folder), then W2ku (absolute), then the parent's unicode name in the
//! child's folder. Backslashes become slashes. Every candidate's unique id must equal
//! the child's parent id; a mismatching candidate is skipped, and reported when no
//! other matches.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::disk::{Disk, RawDisk};
use crate::engine::image::Image;
use crate::engine::storage::{FileStorage, MmapStorage, Storage};
use crate::error::{Error, Result};
use crate::format::footer::{DiskType, FOOTER_COOKIE, FOOTER_LEN};
use crate::format::header::DynamicHeader;
use crate::format::ids::format_uuid;
use crate::format::layout::{ChecksumPolicy, SizePolicy, read_layout};
use crate::format::locator::PlatformCode;

/// Deepest chain accepted (a longer one is taken as a loop).
pub const MAX_CHAIN_DEPTH: usize = 64;

/// What a resolver is asked for: the child and what its header says of the parent.
#[derive(Debug)]
pub struct ParentRequest<'a> {
    /// The child's path.
    pub child: &'a Path,
    /// The child's dynamic header (parent id, time stamp, name, locators).
    pub header: &'a DynamicHeader,
    /// Decoded locator paths, in the child's slot order: (code, text).
    pub locators: &'a [(PlatformCode, String)],
}

/// A hook that supplies parents itself (provision-core hands out already-open,
/// shared read-only bases). `Ok(None)` falls back to the built-in search.
pub trait ParentResolver: Send + Sync {
    /// Returns the parent for `request`, or `None` to let the crate search.
    fn resolve(&self, request: &ParentRequest<'_>) -> Result<Option<Arc<Image>>>;
}

impl<F> ParentResolver for F
where
    F: Fn(&ParentRequest<'_>) -> Result<Option<Arc<Image>>> + Send + Sync,
{
    fn resolve(&self, request: &ParentRequest<'_>) -> Result<Option<Arc<Image>>> {
        self(request)
    }
}

/// How to open an image file and its chain.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Refuse writes (parents are always opened read-only).
    pub read_only: bool,
    /// Checksum policy (default lenient).
    pub checksums: ChecksumPolicy,
    /// Size policy (default: current size).
    pub size_policy: SizePolicy,
    /// Memory-map read-only images (parents, and the image itself when read-only).
    pub mmap: bool,
    /// Never open a parent outside this folder.
    pub root: Option<PathBuf>,
    /// A caller's parent resolver, asked first.
    pub resolver: Option<Arc<dyn ParentResolver>>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("read_only", &self.read_only)
            .field("checksums", &self.checksums)
            .field("size_policy", &self.size_policy)
            .field("mmap", &self.mmap)
            .field("root", &self.root)
            .field("resolver", &self.resolver.is_some())
            .finish()
    }
}

impl OpenOptions {
    /// Default options, read-only or not.
    pub fn new(read_only: bool) -> Self {
        OpenOptions {
            read_only,
            ..Default::default()
        }
    }

    /// Opens the image at `path` with its whole chain.
    pub fn open(&self, path: &Path) -> Result<Image> {
        let mut seen = HashSet::new();
        self.open_inner(path, self.read_only, &mut seen)
    }

    fn storage(&self, path: &Path, read_only: bool) -> Result<Arc<dyn Storage>> {
        let ctx = |e| Error::io(format!("opening {}", path.display()), e);
        Ok(if read_only && self.mmap {
            Arc::new(MmapStorage::open(path).map_err(ctx)?)
        } else {
            Arc::new(FileStorage::open(path, read_only).map_err(ctx)?)
        })
    }

    fn open_inner(
        &self,
        path: &Path,
        read_only: bool,
        seen: &mut HashSet<PathBuf>,
    ) -> Result<Image> {
        let canonical = path
            .canonicalize()
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        if !seen.insert(canonical.clone()) || seen.len() > MAX_CHAIN_DEPTH {
            return Err(Error::ParentLoop(path.to_path_buf()));
        }
        let storage = self.storage(path, read_only)?;
        let layout = read_layout(storage.as_ref(), self.checksums, self.size_policy)?;
        let parent = match (&layout.sparse, layout.footer.disk_type) {
            (Some((header, _)), DiskType::Differencing) => {
                let locators = decode_locators(storage.as_ref(), header);
                Some(self.find_parent(path, header, &locators, seen)?)
            }
            _ => None,
        };
        Image::from_layout(storage, layout, read_only, parent, Some(path.to_path_buf()))
    }

    fn find_parent(
        &self,
        child: &Path,
        header: &DynamicHeader,
        locators: &[(PlatformCode, String)],
        seen: &mut HashSet<PathBuf>,
    ) -> Result<Arc<Image>> {
        if let Some(r) = &self.resolver {
            let request = ParentRequest {
                child,
                header,
                locators,
            };
            if let Some(parent) = r.resolve(&request)? {
                check_parent_id(child, header, &parent)?;
                return Ok(parent);
            }
        }
        let dir = child.parent().unwrap_or(Path::new("."));
        let mut candidates: Vec<PathBuf> = Vec::new();
        for code in [
            PlatformCode::W2ru,
            PlatformCode::W2ku,
            PlatformCode::Wi2r,
            PlatformCode::Wi2k,
            PlatformCode::MacX,
        ] {
            for (c, text) in locators.iter().filter(|(c, _)| *c == code) {
                let norm = text.replace('\\', "/");
                let p = match c {
                    PlatformCode::MacX => PathBuf::from(norm.trim_start_matches("file://")),
                    PlatformCode::W2ru | PlatformCode::Wi2r => {
                        dir.join(norm.trim_start_matches("./"))
                    }
                    _ => PathBuf::from(norm),
                };
                candidates.push(p);
            }
        }
        let name = header.parent_unicode_name.replace('\\', "/");
        if let Some(base) = Path::new(&name).file_name() {
            candidates.push(dir.join(base));
        }
        let mut tried = Vec::new();
        let mut mismatch = None;
        for cand in candidates {
            if tried.contains(&cand) {
                continue;
            }
            tried.push(cand.clone());
            if !cand.is_file() {
                continue;
            }
            if let Some(root) = &self.root {
                let inside = cand
                    .canonicalize()
                    .ok()
                    .zip(root.canonicalize().ok())
                    .is_some_and(|(c, r)| c.starts_with(r));
                if !inside {
                    tracing::warn!(candidate = %cand.display(), "parent candidate outside the image root, skipped");
                    continue;
                }
            }
            let parent = self.open_inner(&cand, true, seen)?;
            match check_parent_id(child, header, &parent) {
                Ok(()) => {
                    check_time_stamp(&cand, header, &parent);
                    return Ok(Arc::new(parent));
                }
                Err(e) => mismatch = Some(e),
            }
        }
        Err(mismatch.unwrap_or_else(|| Error::ParentNotFound {
            child: child.to_path_buf(),
            name: header.parent_unicode_name.clone(),
            tried,
        }))
    }
}

fn check_parent_id(child: &Path, header: &DynamicHeader, parent: &Image) -> Result<()> {
    if parent.footer().unique_id == header.parent_unique_id {
        return Ok(());
    }
    Err(Error::ParentMismatch {
        child: child.to_path_buf(),
        parent: parent.path().map(Path::to_path_buf).unwrap_or_default(),
        expected: format_uuid(&header.parent_unique_id),
        found: format_uuid(&parent.footer().unique_id),
    })
}

/// Time stamp 0 means "not recorded" (Windows); otherwise it should be the parent
/// footer's time stamp or the parent file's modification time. A mismatch is a warning.
fn check_time_stamp(path: &Path, header: &DynamicHeader, parent: &Image) {
    let ts = header.parent_time_stamp;
    if ts == 0 || ts == parent.footer().time_stamp {
        return;
    }
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| {
            d.as_secs()
                .saturating_sub(crate::format::footer::VHD_EPOCH_UNIX)
        });
    if mtime != Some(u64::from(ts)) {
        tracing::warn!(parent = %path.display(), stored = ts, "parent time stamp differs from the parent's");
    }
}

/// Decodes every locator whose data lies inside the file (at most 64 KiB each).
pub fn decode_locators(
    storage: &dyn Storage,
    header: &DynamicHeader,
) -> Vec<(PlatformCode, String)> {
    let file_len = storage.len().unwrap_or(0);
    let mut out = Vec::new();
    for loc in header.locators.iter().filter(|l| !l.is_empty()) {
        let len = u64::from(loc.data_length).min(64 << 10);
        let fits = loc
            .data_offset
            .checked_add(len)
            .is_some_and(|e| e <= file_len);
        if !fits || len == 0 {
            continue;
        }
        let mut data = vec![0; len as usize];
        if storage.read_at(&mut data, loc.data_offset).is_err() {
            continue;
        }
        if let Some(text) = loc.decode(&data) {
            out.push((loc.code, text));
        }
    }
    out
}

/// True when `storage` holds a VHD: the footer cookie at the end (512 or 511 bytes
/// from it) or at offset 0.
pub fn looks_like_vhd(storage: &dyn Storage) -> Result<bool> {
    let len = storage.len().map_err(|e| Error::io("image length", e))?;
    let probe = |off: u64| -> Result<bool> {
        let mut b = [0u8; 8];
        storage
            .read_at(&mut b, off)
            .map_err(|e| Error::io("probing for a footer", e))?;
        Ok(&b == FOOTER_COOKIE)
    };
    if len >= FOOTER_LEN as u64 && (probe(len - FOOTER_LEN as u64)? || probe(0)?) {
        return Ok(true);
    }
    Ok(len >= FOOTER_LEN as u64 - 1 && probe(len - (FOOTER_LEN as u64 - 1))?)
}

/// Opens a raw file or any VHD (fixed, dynamic, differencing with its chain), detected
/// by the footer cookie `conectix` (at the end, or the copy at offset 0).
pub fn open_disk(path: &Path, read_only: bool) -> Result<Arc<dyn Disk>> {
    Ok(open_disk_with_files(path, read_only)?.0)
}

/// [`open_disk`], also returning the files the disk reads: `path`, and for a
/// differencing VHD every image of its chain.
pub(crate) fn open_disk_with_files(
    path: &Path,
    read_only: bool,
) -> Result<(Arc<dyn Disk>, Vec<PathBuf>)> {
    let storage: Arc<dyn Storage> = Arc::new(
        FileStorage::open(path, read_only)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?,
    );
    if looks_like_vhd(storage.as_ref())? {
        let image = OpenOptions::new(read_only).open(path)?;
        let mut files = vec![path.to_path_buf()];
        files.extend(
            image
                .chain()
                .iter()
                .filter_map(|i| i.path().map(Path::to_path_buf)),
        );
        Ok((Arc::new(image), files))
    } else {
        Ok((Arc::new(RawDisk::new(storage)?), vec![path.to_path_buf()]))
    }
}
