//! Shared read-only images: every version file is opened once, memory-mapped, and
//! shared by all sessions and by the children that use it as a parent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use vhd::{Image, OpenOptions, ParentRequest, PlatformCode};

use crate::error::{Error, Result};

/// Open read-only images by canonical path; an image lives as long as a session or a
/// child image holds it.
#[derive(Debug)]
pub(crate) struct Bases {
    root: PathBuf,
    open: Mutex<HashMap<PathBuf, Weak<Image>>>,
}

impl Bases {
    pub(crate) fn new(root: &Path) -> Arc<Self> {
        Arc::new(Self {
            root: root.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The shared image at `path`, opening it (and its parents) if no one has it open.
    pub(crate) fn get(self: &Arc<Self>, path: &Path) -> Result<Arc<Image>> {
        let canonical = path.canonicalize().map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        if let Some(image) = self.lookup(&canonical) {
            return Ok(image);
        }
        // Opened outside the lock: opening resolves parents through `get` again.
        let image = Arc::new(self.options(true).open(&canonical)?);
        let mut open = self.lock();
        if let Some(racing) = open.get(&canonical).and_then(Weak::upgrade) {
            return Ok(racing);
        }
        open.retain(|_, weak| weak.strong_count() > 0);
        open.insert(canonical, Arc::downgrade(&image));
        Ok(image)
    }

    /// Options that open an image inside the store, taking its parents from here.
    pub(crate) fn options(self: &Arc<Self>, read_only: bool) -> OpenOptions {
        let me = Arc::clone(self);
        OpenOptions {
            read_only,
            mmap: read_only,
            root: Some(self.root.clone()),
            resolver: Some(Arc::new(move |request: &ParentRequest<'_>| {
                me.resolve(request)
            })),
            ..OpenOptions::default()
        }
    }

    /// True when some session or child still holds the image at `path`.
    pub(crate) fn in_use(&self, path: &Path) -> bool {
        path.canonicalize()
            .is_ok_and(|canonical| self.lookup(&canonical).is_some())
    }

    fn lookup(&self, canonical: &Path) -> Option<Arc<Image>> {
        self.lock().get(canonical).and_then(Weak::upgrade)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Weak<Image>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Supplies a child's parent from the shared images: the relative locator first
    /// (the store writes it), then the parent's name beside the child.
    fn resolve(self: &Arc<Self>, request: &ParentRequest<'_>) -> vhd::Result<Option<Arc<Image>>> {
        let dir = request.child.parent().unwrap_or(Path::new("."));
        let relative = request
            .locators
            .iter()
            .filter(|(code, _)| *code == PlatformCode::W2ru)
            .map(|(_, text)| dir.join(text.replace('\\', "/").trim_start_matches("./")));
        let by_name = Path::new(&request.header.parent_unicode_name.replace('\\', "/"))
            .file_name()
            .map(|name| dir.join(name));
        for candidate in relative.chain(by_name) {
            if candidate.is_file() {
                return match self.get(&candidate) {
                    Ok(image) => Ok(Some(image)),
                    // Let the crate search on and report every path it tried.
                    Err(_) => Ok(None),
                };
            }
        }
        Ok(None)
    }
}
