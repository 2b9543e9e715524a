//! One partition of a version's image as the file-system crates want it: positional
//! reads for `ext4-view`, Read + Seek (and a Write that refuses) for `fatfs`; and the
//! lookup of kernel and initrd on an ext2/3/4 or FAT file system in it.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use vhd::Disk;

use super::names::{MAX_FILE, candidates};
use super::partitions::Partition;

/// A kernel and initrd found on one file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The partition number (0: the whole disk).
    pub partition: u32,
    /// The kernel's path on it, symlinks resolved.
    pub kernel_path: String,
    /// The initrd's path on it, symlinks resolved.
    pub initrd_path: String,
    /// The kernel's bytes.
    pub kernel: Vec<u8>,
    /// The initrd's bytes.
    pub initrd: Vec<u8>,
}

/// The bytes `[start, start + len)` of a disk.
#[derive(Clone)]
pub(super) struct Volume {
    disk: Arc<dyn Disk>,
    part: Partition,
    cursor: u64,
}

impl Volume {
    pub(super) fn new(disk: Arc<dyn Disk>, part: Partition) -> Self {
        Self {
            disk,
            part,
            cursor: 0,
        }
    }

    /// Fills `buf` from `offset` within the volume.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.part.len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the end of partition {} ({} bytes)",
                    buf.len(),
                    self.part.number,
                    self.part.len
                ),
            ));
        }
        self.disk
            .read_at(buf, self.part.start + offset)
            .map_err(io::Error::other)
    }

    /// True when the volume holds an ext2/3/4 superblock (magic 0xEF53 at byte 1080).
    fn is_ext(&self) -> bool {
        let mut magic = [0; 2];
        self.read_exact_at(&mut magic, 1080).is_ok() && magic == [0x53, 0xef]
    }

    /// The kernel and initrd on this volume's file system, if it is ext2/3/4 or FAT and
    /// holds one of [`candidates`]; `Err` says why the file system could not be read.
    pub(super) fn find(&self) -> Result<Option<Found>, String> {
        if self.is_ext() {
            self.find_ext()
        } else {
            self.find_fat()
        }
    }

    fn find_ext(&self) -> Result<Option<Found>, String> {
        let fs = ext4_view::Ext4::load(Box::new(self.clone()))
            .map_err(|e| format!("ext2/3/4 file system: {e}"))?;
        let names: Vec<String> = match fs.read_dir("/boot") {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().as_str().ok().map(str::to_owned))
                .take(10_000)
                .collect(),
            Err(_) => Vec::new(),
        };
        for (kernel, initrd) in candidates(&names) {
            let file = |path: &str| -> Result<Option<(String, Vec<u8>)>, String> {
                let Ok(real) = fs.canonicalize(path) else {
                    return Ok(None);
                };
                let real_name = real.to_str().unwrap_or(path).to_owned();
                match fs.metadata(&real) {
                    Ok(m) if m.is_dir() || m.is_symlink() => return Ok(None),
                    Ok(m) if m.len() > MAX_FILE => {
                        return Err(format!("{real_name}: {} bytes is no boot file", m.len()));
                    }
                    Ok(_) => {}
                    Err(_) => return Ok(None),
                }
                let bytes = fs
                    .read(&real)
                    .map_err(|e| format!("reading {real_name}: {e}"))?;
                Ok(Some((real_name, bytes)))
            };
            if let (Some(k), Some(i)) = (file(&kernel)?, file(&initrd)?) {
                return Ok(Some(self.found(k, i)));
            }
        }
        Ok(None)
    }

    fn find_fat(&self) -> Result<Option<Found>, String> {
        let fs = fatfs::FileSystem::new(self.clone(), fatfs::FsOptions::new())
            .map_err(|e| format!("neither ext2/3/4 nor FAT: {e}"))?;
        let root = fs.root_dir();
        let names: Vec<String> = match root.open_dir("boot") {
            Ok(dir) => dir
                .iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.is_file())
                .map(|e| e.file_name())
                .take(10_000)
                .collect(),
            Err(_) => Vec::new(),
        };
        for (kernel, initrd) in candidates(&names) {
            let file = |path: &str| -> Result<Option<(String, Vec<u8>)>, String> {
                let Ok(mut f) = root.open_file(path.trim_start_matches('/')) else {
                    return Ok(None);
                };
                let mut bytes = Vec::new();
                (&mut f)
                    .take(MAX_FILE + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("reading {path}: {e}"))?;
                if bytes.len() as u64 > MAX_FILE {
                    return Err(format!("{path}: larger than a boot file"));
                }
                Ok(Some((path.to_owned(), bytes)))
            };
            if let (Some(k), Some(i)) = (file(&kernel)?, file(&initrd)?) {
                return Ok(Some(self.found(k, i)));
            }
        }
        Ok(None)
    }

    fn found(&self, kernel: (String, Vec<u8>), initrd: (String, Vec<u8>)) -> Found {
        Found {
            partition: self.part.number,
            kernel_path: kernel.0,
            initrd_path: initrd.0,
            kernel: kernel.1,
            initrd: initrd.1,
        }
    }
}

impl ext4_view::Ext4Read for Volume {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(self.read_exact_at(dst, start_byte)?)
    }
}

impl Read for Volume {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.part.len.saturating_sub(self.cursor);
        let n = room.min(buf.len() as u64) as usize;
        self.read_exact_at(&mut buf[..n], self.cursor)?;
        self.cursor += n as u64;
        Ok(n)
    }
}

impl Seek for Volume {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.part.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.cursor.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the partition's start",
            )
        })?;
        self.cursor = target;
        Ok(target)
    }
}

/// `fatfs` wants a writable disk; a version's image is read here, never written.
impl Write for Volume {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a version's image is read-only when its boot files are read",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
