//! The positional block device a logical unit serves, and an in-memory one for tests.

use std::io;
use std::sync::RwLock;

/// A block device: positional, synchronous, `Send + Sync` (the same shape as
/// `nbd_proto::Export`, so one adapter serves both protocols). Offsets and lengths are
/// in bytes and always whole blocks.
pub trait BlockDevice: Send + Sync {
    /// The size in bytes (a multiple of [`BlockDevice::block_size`]; a tail is not served).
    fn size(&self) -> u64;
    /// The logical block size (512 unless the device says otherwise).
    fn block_size(&self) -> u32 {
        512
    }
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn flush(&self) -> io::Result<()>;
    /// True when writes are refused (the LUN reports write protect).
    fn read_only(&self) -> bool;
    /// True when [`BlockDevice::unmap`] works (UNMAP and WRITE SAME with UNMAP are
    /// advertised only then).
    fn can_unmap(&self) -> bool {
        false
    }
    /// Deallocates a range; afterwards it reads as zeros.
    fn unmap(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Writes zeros over a range (by default with [`BlockDevice::write_at`], 64 KiB at a time).
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let zeros = vec![0u8; 65536];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.write_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

/// A block device in memory (tests, examples).
pub struct MemDisk {
    data: RwLock<Vec<u8>>,
    read_only: bool,
}

impl MemDisk {
    /// A device holding `data`.
    pub fn new(data: Vec<u8>, read_only: bool) -> MemDisk {
        MemDisk {
            data: RwLock::new(data),
            read_only,
        }
    }

    /// A copy of the contents.
    pub fn contents(&self) -> Vec<u8> {
        self.data.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn range(&self, offset: u64, len: usize, have: usize) -> io::Result<std::ops::Range<usize>> {
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end = start.checked_add(len).filter(|&e| e <= have);
        end.map(|e| start..e)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }
}

impl BlockDevice for MemDisk {
    fn size(&self) -> u64 {
        self.data.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let data = self.data.read().unwrap_or_else(|e| e.into_inner());
        let r = self.range(offset, buf.len(), data.len())?;
        buf.copy_from_slice(&data[r]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.read_only {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let r = self.range(offset, buf.len(), data.len())?;
        data[r].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn can_unmap(&self) -> bool {
        !self.read_only
    }
    fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let r = self.range(offset, len, data.len())?;
        data[r].fill(0);
        Ok(())
    }
}
