//! A disk (a raw file, a VHD chain, an overlay) as the block device of an iSCSI logical
//! unit. The vDisk-session adapter (device lookup by initiator name, write caches) is
//! not here yet: this serves one disk as it is, for `iscsi-serve`.

use std::io;
use std::sync::Arc;

use vhd::Disk;

/// A [`Disk`] as an [`iscsi::BlockDevice`].
pub struct DiskLun {
    disk: Arc<dyn Disk>,
}

impl DiskLun {
    /// A logical unit's device over `disk`.
    pub fn new(disk: Arc<dyn Disk>) -> DiskLun {
        DiskLun { disk }
    }
}

fn io_err(e: vhd::Error) -> io::Error {
    e.to_io_error()
}

impl iscsi::BlockDevice for DiskLun {
    fn size(&self) -> u64 {
        self.disk.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.disk.read_at(buf, offset).map_err(io_err)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.disk.write_at(buf, offset).map_err(io_err)
    }
    fn flush(&self) -> io::Result<()> {
        self.disk.flush().map_err(io_err)
    }
    fn read_only(&self) -> bool {
        self.disk.is_read_only()
    }
    /// UNMAP is served by writing zeros: the disk's trim is advisory, and the LUN
    /// reports that unmapped blocks read as zeros (LBPRZ).
    fn can_unmap(&self) -> bool {
        !self.disk.is_read_only()
    }
    fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        self.disk.write_zeroes(offset, len).map_err(io_err)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.disk.write_zeroes(offset, len).map_err(io_err)
    }
}
