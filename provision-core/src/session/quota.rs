//! A quota on an image a session writes: a durable write cache (a standard-mode boot's
//! differencing VHD, `cache/<mac>/<vdisk>.boot<N>.vhd`) or the private disk of a device
//! that was let in by auto-add.
//!
//! The quota counts what the image holds ([`Image::allocated_len`]: metadata and
//! allocated blocks, from memory, no system call on the write path), not the file's
//! length: past it, writes that would allocate new blocks fail with "no space" (the
//! device sees a full disk, never a hang); rewrites of blocks the image already holds
//! go on. TRIM gives room back: blocks a device trims whole are unlinked and their
//! space returned (the file keeps its length, with holes, and reuses the slots for
//! new blocks), so a device that deletes files can write again.

use std::sync::Arc;

use vhd::{Disk, Extent, Image};

/// An image with a quota.
pub(crate) struct Quota {
    image: Arc<Image>,
    quota: u64,
}

impl Quota {
    pub(crate) fn new(image: Arc<Image>, quota: u64) -> Self {
        Self { image, quota }
    }

    /// Fails with "no space" when the image holds its quota and the write needs a
    /// block it does not hold yet.
    fn room(&self, offset: u64, len: u64) -> vhd::Result<()> {
        let used = self.image.allocated_len();
        if used < self.quota {
            return Ok(());
        }
        let held = self
            .image
            .layers(offset, len)?
            .iter()
            .all(|(_, _, layer)| *layer == Some(0));
        if held {
            Ok(())
        } else {
            Err(vhd::Error::NoSpace(format!(
                "the image holds {used} bytes, its quota is {}",
                self.quota
            )))
        }
    }
}

impl Disk for Quota {
    fn size(&self) -> u64 {
        self.image.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> vhd::Result<()> {
        self.image.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> vhd::Result<()> {
        self.room(offset, buf.len() as u64)?;
        self.image.write_at(buf, offset)
    }
    fn flush(&self) -> vhd::Result<()> {
        self.image.flush()
    }
    fn is_read_only(&self) -> bool {
        false
    }
    fn allocation(&self, offset: u64, len: u64) -> vhd::Result<Vec<Extent>> {
        self.image.allocation(offset, len)
    }
    fn locate(&self, offset: u64, len: u64) -> vhd::Result<Option<Vec<vhd::Located>>> {
        self.image.locate(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.room(offset, len)?;
        self.image.write_zeroes(offset, len)
    }
    fn trim(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.image.trim(offset, len)
    }
}
