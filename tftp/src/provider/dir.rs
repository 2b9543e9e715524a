//! [`DirProvider`]: files under one root directory, strictly confined (SPECS §3.5), with a
//! shared cache of open files so many clients reading one boot file share one open file
//! (or one in-memory copy for small files).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{MemorySource, Provider, Sink, Source};
use crate::error::{Error, ErrorCode};

/// Files up to this size are kept in memory once opened.
const DEFAULT_MEMORY_LIMIT: u64 = 4 << 20;
/// Entries kept in the open-file cache before it is emptied.
const MAX_CACHE_ENTRIES: usize = 4096;

/// Serves the regular files under `root`.
///
/// Path rules, checked on every request:
/// - `\` is a separator (Windows boot paths), empty and `.` components are skipped;
/// - any `..` component is refused with ERROR 2 (access violation);
/// - a leading `/` names the root (like tftpd-hpa `--secure`), unless
///   [`refuse_absolute`](Self::refuse_absolute) makes it an access violation;
/// - the resolved path is canonicalized and must stay under the canonical root, so a
///   symlink cannot lead outside it (ERROR 2);
/// - with [`case_insensitive`](Self::case_insensitive), each component that does not
///   exist as written is matched without regard to ASCII case.
///
/// Uploads are refused unless [`allow_write`](Self::allow_write) is set; they go to a
/// temporary file in the target directory, renamed into place when complete.
#[derive(Debug)]
pub struct DirProvider {
    root: PathBuf,
    case_insensitive: bool,
    refuse_absolute: bool,
    allow_write: bool,
    memory_limit: u64,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    stamp: Stamp,
    source: Arc<dyn Source>,
}

/// What identifies one version of a file: a change to any field reopens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.modified().ok(),
        }
    }
}

/// An open file shared by every transfer reading it (positional reads).
#[derive(Debug)]
struct FileSource {
    file: File,
    len: u64,
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.len.saturating_sub(offset).min(buf.len() as u64) as usize;
        if room == 0 {
            return Ok(0);
        }
        self.file.read_at(&mut buf[..room], offset)
    }
}

impl DirProvider {
    /// Serves files under `root`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when `root` cannot be canonicalized or is not a directory.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, Error> {
        let root = root.as_ref();
        let root = root
            .canonicalize()
            .map_err(|e| Error::io(format!("opening root {}", root.display()), e))?;
        if !root.is_dir() {
            return Err(Error::io(
                format!("opening root {}", root.display()),
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(Self {
            root,
            case_insensitive: false,
            refuse_absolute: false,
            allow_write: false,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Matches path components without regard to ASCII case when the exact name is absent.
    pub fn case_insensitive(mut self, yes: bool) -> Self {
        self.case_insensitive = yes;
        self
    }

    /// Refuses paths that start with `/` or `\` (ERROR 2) instead of resolving them
    /// from the root.
    pub fn refuse_absolute(mut self, yes: bool) -> Self {
        self.refuse_absolute = yes;
        self
    }

    /// Accepts uploads (WRQ).
    pub fn allow_write(mut self, yes: bool) -> Self {
        self.allow_write = yes;
        self
    }

    /// Files up to `bytes` are held in memory once opened (shared by all readers).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Splits a requested path into confined components, or refuses it.
    fn components<'p>(&self, requested: &'p str) -> Result<Vec<&'p str>, Error> {
        if requested.contains('\0') {
            return Err(Error::access_violation());
        }
        if self.refuse_absolute && (requested.starts_with('/') || requested.starts_with('\\')) {
            return Err(Error::access_violation());
        }
        let mut parts = Vec::new();
        for part in requested.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => return Err(Error::access_violation()),
                p => parts.push(p),
            }
        }
        Ok(parts)
    }

    /// Joins components under the root, matching case when asked to.
    fn join(&self, parts: &[&str]) -> PathBuf {
        let mut path = self.root.clone();
        for part in parts {
            let exact = path.join(part);
            if self.case_insensitive && fs::symlink_metadata(&exact).is_err() {
                let found = fs::read_dir(&path).ok().and_then(|entries| {
                    entries.flatten().find_map(|e| {
                        e.file_name()
                            .to_str()
                            .filter(|n| n.eq_ignore_ascii_case(part))
                            .map(|_| e.path())
                    })
                });
                path = found.unwrap_or(exact);
            } else {
                path = exact;
            }
        }
        path
    }

    /// Canonicalizes `path` and checks it stays under the root.
    fn confine(&self, path: &Path) -> Result<PathBuf, Error> {
        let canonical = path.canonicalize().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Error::not_found(),
            io::ErrorKind::PermissionDenied => Error::access_violation(),
            _ => Error::io("resolving a path", e),
        })?;
        if !canonical.starts_with(&self.root) {
            tracing::warn!(path = %path.display(), "refused: resolves outside the root");
            return Err(Error::access_violation());
        }
        Ok(canonical)
    }

    /// Resolves a requested path to an existing file under the root.
    fn resolve(&self, requested: &str) -> Result<PathBuf, Error> {
        let parts = self.components(requested)?;
        if parts.is_empty() {
            return Err(Error::not_found());
        }
        self.confine(&self.join(&parts))
    }

    fn open_uncached(&self, path: &Path, meta: &fs::Metadata) -> Result<Arc<dyn Source>, Error> {
        let file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => Error::access_violation(),
            io::ErrorKind::NotFound => Error::not_found(),
            _ => Error::io(format!("opening {}", path.display()), e),
        })?;
        let len = meta.len();
        if len <= self.memory_limit {
            let source = FileSource { file, len };
            let mut bytes = vec![0; len as usize];
            let mut got = 0;
            while got < bytes.len() {
                let n = source
                    .read_at(got as u64, &mut bytes[got..])
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            bytes.truncate(got);
            return Ok(Arc::new(MemorySource::from(bytes)));
        }
        Ok(Arc::new(FileSource { file, len }))
    }
}

impl Provider for DirProvider {
    fn open(&self, path: &str, peer: SocketAddr) -> Result<Arc<dyn Source>, Error> {
        let resolved = self.resolve(path)?;
        let meta = fs::metadata(&resolved).map_err(|_| Error::not_found())?;
        if !meta.is_file() {
            return Err(Error::not_found());
        }
        let stamp = Stamp::of(&meta);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cache.get(&resolved).filter(|c| c.stamp == stamp) {
            return Ok(hit.source.clone());
        }
        let source = self.open_uncached(&resolved, &meta)?;
        tracing::debug!(path = %resolved.display(), %peer, len = meta.len(), "opened");
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(
            resolved,
            Cached {
                stamp,
                source: source.clone(),
            },
        );
        Ok(source)
    }

    fn create(
        &self,
        path: &str,
        peer: SocketAddr,
        _size: Option<u64>,
    ) -> Result<Box<dyn Sink>, Error> {
        if !self.allow_write {
            return Err(Error::refused(
                ErrorCode::AccessViolation,
                "Uploads are not allowed",
            ));
        }
        let parts = self.components(path)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(Error::access_violation());
        };
        let dir = self.confine(&self.join(dirs))?;
        if !dir.is_dir() {
            return Err(Error::not_found());
        }
        let target = dir.join(name);
        if target.is_dir() {
            return Err(Error::access_violation());
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.upload-{}-{n}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| Error::io(format!("creating {}", temp.display()), e))?;
        tracing::info!(path = %target.display(), %peer, "upload started");
        Ok(Box::new(DirSink {
            file: Some(file),
            temp,
            target,
        }))
    }
}

/// An upload in progress: a temporary file renamed over the target on commit.
#[derive(Debug)]
struct DirSink {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
}

impl Sink for DirSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        match &self.file {
            Some(f) => f.write_all_at(data, offset),
            None => Err(io::Error::other("upload already ended")),
        }
    }

    fn commit(mut self: Box<Self>) -> io::Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        fs::rename(&self.temp, &self.target)
    }
}

impl Drop for DirSink {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:1234".parse().unwrap()
    }

    fn read_all(s: &dyn Source) -> Vec<u8> {
        let mut v = vec![0; s.len() as usize];
        assert_eq!(s.read_at(0, &mut v).unwrap(), v.len());
        v
    }

    fn setup() -> (tempfile::TempDir, DirProvider) {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        fs::create_dir_all(root.join("EFI/Boot")).unwrap();
        fs::write(root.join("EFI/Boot/bootx64.efi"), b"efi").unwrap();
        fs::write(root.join("pxelinux.0"), b"pxe").unwrap();
        fs::write(top.path().join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(top.path().join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink("pxelinux.0", root.join("inside")).unwrap();
        let p = DirProvider::new(&root).unwrap();
        (top, p)
    }

    fn code(r: Result<Arc<dyn Source>, Error>) -> ErrorCode {
        match r {
            Err(e) => e.to_wire().0,
            Ok(s) => panic!("opened {s:?}"),
        }
    }

    #[test]
    fn serves_files_with_either_separator() {
        let (_t, p) = setup();
        assert_eq!(read_all(&*p.open("pxelinux.0", peer()).unwrap()), b"pxe");
        assert_eq!(read_all(&*p.open("/pxelinux.0", peer()).unwrap()), b"pxe");
        assert_eq!(
            read_all(&*p.open("EFI\\Boot\\bootx64.efi", peer()).unwrap()),
            b"efi"
        );
        assert_eq!(
            read_all(&*p.open("./EFI//Boot/./bootx64.efi", peer()).unwrap()),
            b"efi"
        );
        assert_eq!(read_all(&*p.open("inside", peer()).unwrap()), b"pxe");
    }

    #[test]
    fn refuses_every_escape() {
        let (_t, p) = setup();
        for bad in [
            "../secret",
            "EFI/../../secret",
            "..\\secret",
            "EFI\\..\\..\\secret",
            "..",
        ] {
            assert_eq!(
                code(p.open(bad, peer())),
                ErrorCode::AccessViolation,
                "{bad}"
            );
        }
        assert_eq!(code(p.open("escape", peer())), ErrorCode::AccessViolation);
        assert_eq!(code(p.open("/etc/passwd", peer())), ErrorCode::FileNotFound);
        assert_eq!(
            code(p.open("%2e%2e/secret", peer())),
            ErrorCode::FileNotFound
        );
        assert_eq!(code(p.open("EFI", peer())), ErrorCode::FileNotFound);
        assert_eq!(code(p.open("", peer())), ErrorCode::FileNotFound);
        let strict = DirProvider::new(p.root()).unwrap().refuse_absolute(true);
        assert_eq!(
            code(strict.open("/pxelinux.0", peer())),
            ErrorCode::AccessViolation
        );
    }

    #[test]
    fn case_insensitive_lookup_is_optional() {
        let (_t, p) = setup();
        assert_eq!(
            code(p.open("efi/boot/BOOTX64.EFI", peer())),
            ErrorCode::FileNotFound
        );
        let p = p.case_insensitive(true);
        assert_eq!(
            read_all(&*p.open("efi/boot/BOOTX64.EFI", peer()).unwrap()),
            b"efi"
        );
        assert_eq!(code(p.open("ESCAPE", peer())), ErrorCode::AccessViolation);
    }

    #[test]
    fn readers_share_one_source_until_the_file_changes() {
        let (t, p) = setup();
        let p = p.memory_limit(0);
        let a = p.open("pxelinux.0", peer()).unwrap();
        let b = p.open("pxelinux.0", peer()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        fs::write(t.path().join("root/pxelinux.0"), b"changed!").unwrap();
        let c = p.open("pxelinux.0", peer()).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(read_all(&*c), b"changed!");
    }

    #[test]
    fn uploads_are_atomic_and_off_by_default() {
        let (t, p) = setup();
        assert!(p.create("up", peer(), None).is_err());
        let p = p.allow_write(true);
        assert_eq!(
            p.create("../up", peer(), None).unwrap_err().to_wire().0,
            ErrorCode::AccessViolation
        );
        let mut sink = p.create("EFI/up.bin", peer(), None).unwrap();
        sink.write_at(0, b"hello").unwrap();
        assert!(!t.path().join("root/EFI/up.bin").exists());
        sink.commit().unwrap();
        assert_eq!(
            fs::read(t.path().join("root/EFI/up.bin")).unwrap(),
            b"hello"
        );
        let mut sink = p.create("aborted", peer(), None).unwrap();
        sink.write_at(0, b"x").unwrap();
        drop(sink);
        let names: Vec<_> = fs::read_dir(t.path().join("root"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            !names.iter().any(|n| n.to_string_lossy().contains("upload")),
            "{names:?}"
        );
    }
}
