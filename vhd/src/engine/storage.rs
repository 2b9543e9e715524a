//! Positional storage under an image: files (pread/pwrite), read-only memory maps, and
//! memory. Everything above this trait is testable over bytes, and failures can be
//! injected by wrapping a storage.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Positional I/O on the bytes of one image file. Implementations are shared by many
/// threads: every method takes `&self`.
pub trait Storage: Send + Sync {
    /// Fills `buf` from `offset`; reading past the end is an `UnexpectedEof` error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing the storage if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every earlier write durable.
    fn flush(&self) -> io::Result<()>;
    /// The current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// True when writes are refused.
    fn is_read_only(&self) -> bool {
        false
    }
    /// Gives the space of `[offset, offset + len)` back to whatever holds the bytes,
    /// keeping the length: afterwards the range reads as zeros. `Ok(false)` (the
    /// default) when this storage cannot, and the range keeps its bytes.
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<bool> {
        let _ = (offset, len);
        Ok(false)
    }
    /// True when the storage holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The file whose bytes these are at the same offsets, if there is one (for
    /// [`crate::Disk::locate`]).
    fn file(&self) -> Option<&Arc<File>> {
        None
    }
}

fn read_only_error() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "storage is read-only")
}

/// A file read and written with pread/pwrite: no seek position, no lock.
#[derive(Debug)]
pub struct FileStorage {
    file: Arc<File>,
    read_only: bool,
}

impl FileStorage {
    /// Opens `path` for reading, and writing unless `read_only`.
    pub fn open(path: &Path, read_only: bool) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)?;
        Ok(FileStorage::from_file(file, read_only))
    }

    /// Creates (or truncates) `path` for reading and writing.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(FileStorage::from_file(file, false))
    }

    /// Wraps an open file.
    pub fn from_file(file: File, read_only: bool) -> Self {
        FileStorage {
            file: Arc::new(file),
            read_only,
        }
    }
}

impl Storage for FileStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        self.file.write_all_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        self.file.set_len(len)
    }
    fn is_read_only(&self) -> bool {
        self.read_only
    }
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`; `Ok(false)` where the file system has no
    /// holes (EOPNOTSUPP).
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<bool> {
        use rustix::fs::{FallocateFlags, fallocate};
        if self.read_only {
            return Err(read_only_error());
        }
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match fallocate(&*self.file, flags, offset, len) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::OPNOTSUPP) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
    fn file(&self) -> Option<&Arc<File>> {
        Some(&self.file)
    }
}

/// A read-only memory map of an image file: reads are copies, no system call.
///
/// Only for files nobody truncates while mapped (vDisk bases and published versions
/// are immutable); a truncation under a map ends the process with SIGBUS.
pub struct MmapStorage {
    map: memmap2::Mmap,
    /// The mapped file, kept for zero-copy sends of its bytes.
    file: Arc<File>,
}

impl MmapStorage {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only and private to this value; the documented
        // contract is that mapped images are immutable files, so the bytes behind the
        // slice do not change or disappear while it lives.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(MmapStorage {
            map,
            file: Arc::new(file),
        })
    }
}

impl std::fmt::Debug for MmapStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapStorage")
            .field("len", &self.map.len())
            .finish()
    }
}

fn copy_out(src: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start = usize::try_from(offset).ok();
    let slice = start
        .and_then(|s| s.checked_add(buf.len()).map(|e| (s, e)))
        .and_then(|(s, e)| src.get(s..e));
    match slice {
        Some(s) => {
            buf.copy_from_slice(s);
            Ok(())
        }
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read past the end of the storage",
        )),
    }
}

impl Storage for MmapStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        copy_out(&self.map, buf, offset)
    }
    fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(read_only_error())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.map.len() as u64)
    }
    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(read_only_error())
    }
    fn is_read_only(&self) -> bool {
        true
    }
    fn file(&self) -> Option<&Arc<File>> {
        Some(&self.file)
    }
}

/// Bytes in memory behind a lock: for tests, fuzzing and small images.
#[derive(Debug, Default)]
pub struct MemStorage {
    bytes: RwLock<Vec<u8>>,
    read_only: bool,
}

impl MemStorage {
    /// A writable storage holding `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        MemStorage {
            bytes: RwLock::new(bytes),
            read_only: false,
        }
    }

    /// A read-only storage holding `bytes`.
    pub fn read_only(bytes: Vec<u8>) -> Self {
        MemStorage {
            bytes: RwLock::new(bytes),
            read_only: true,
        }
    }

    /// A copy of the bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Storage for MemStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        copy_out(
            &self.bytes.read().unwrap_or_else(|e| e.into_inner()),
            buf,
            offset,
        )
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        let mut v = self.bytes.write().unwrap_or_else(|e| e.into_inner());
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if v.len() < end {
            v.resize(end, 0);
        }
        v[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.read().unwrap_or_else(|e| e.into_inner()).len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.bytes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .resize(len, 0);
        Ok(())
    }
    fn is_read_only(&self) -> bool {
        self.read_only
    }
    /// Zeros the range (within the current length; the length is kept).
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<bool> {
        if self.read_only {
            return Err(read_only_error());
        }
        let mut v = self.bytes.write().unwrap_or_else(|e| e.into_inner());
        let end = offset.saturating_add(len).min(v.len() as u64) as usize;
        let start = (offset.min(end as u64)) as usize;
        v[start..end].fill(0);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_storage_grows_and_reports_eof() {
        let s = MemStorage::new(vec![1, 2, 3]);
        s.write_at(&[9, 9], 4).unwrap();
        assert_eq!(s.to_vec(), vec![1, 2, 3, 0, 9, 9]);
        let mut b = [0; 4];
        assert_eq!(
            s.read_at(&mut b, 4).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(MemStorage::read_only(vec![]).write_at(&[1], 0).is_err());
    }

    #[test]
    fn file_and_map_read_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = FileStorage::create(&p).unwrap();
        f.write_at(b"hello world", 0).unwrap();
        f.flush().unwrap();
        let m = MmapStorage::open(&p).unwrap();
        let mut a = [0; 5];
        let mut b = [0; 5];
        f.read_at(&mut a, 6).unwrap();
        m.read_at(&mut b, 6).unwrap();
        assert_eq!(&a, b"world");
        assert_eq!(a, b);
        assert!(m.read_at(&mut b, 8).is_err());
    }
}
