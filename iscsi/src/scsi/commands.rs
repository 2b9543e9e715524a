//! The commands of a direct-access logical unit (SBC-3) and the primary commands it
//! must answer (SPC-4), as functions from CDB and data-out bytes to an [`Outcome`].

use std::sync::Arc;

use super::device::BlockDevice;
use super::sense::{Sense, status};

/// Most blocks one READ or WRITE may move (VPD 0xB0 MAXIMUM TRANSFER LENGTH): bounds the
/// buffer a command costs. 8 MiB at 512-byte blocks.
pub const MAX_TRANSFER_BYTES: u32 = 8 << 20;
/// Most block descriptors one UNMAP may carry.
const MAX_UNMAP_DESCRIPTORS: u32 = 256;

/// What the logical unit reports about itself.
#[derive(Debug, Clone)]
pub struct Identity {
    /// T10 vendor identification (8 ASCII characters, padded).
    pub vendor: String,
    /// Product identification (16 ASCII characters, padded).
    pub product: String,
    /// Product revision level (4 ASCII characters).
    pub revision: String,
    /// Unit serial number (VPD 0x80).
    pub serial: String,
    /// The iSCSI target name (VPD 0x83 SCSI name string).
    pub target_name: String,
    /// A 60-bit value for the locally assigned NAA designator (VPD 0x83).
    pub naa_id: u64,
}

impl Identity {
    /// An identity derived from the target name (serial and NAA are a hash of it, so
    /// they stay the same across restarts).
    pub fn for_target(target_name: &str) -> Identity {
        let h = crate::digest::crc32c(target_name.as_bytes());
        let h2 = crate::digest::crc32c_append(h, b"lun0");
        Identity {
            vendor: "PROVISN".into(),
            product: "vDisk".into(),
            revision: "0001".into(),
            serial: format!("{h:08x}{h2:08x}"),
            target_name: target_name.into(),
            naa_id: (u64::from(h) << 28) ^ u64::from(h2),
        }
    }
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// SCSI status.
    pub status: u8,
    /// Data for the initiator (already cut to the allocation length).
    pub data: Vec<u8>,
    /// The sense, with CHECK CONDITION.
    pub sense: Option<Sense>,
}

impl Outcome {
    fn good(data: Vec<u8>) -> Outcome {
        Outcome {
            status: status::GOOD,
            data,
            sense: None,
        }
    }
    fn check(sense: Sense) -> Outcome {
        Outcome {
            status: status::CHECK_CONDITION,
            data: Vec::new(),
            sense: Some(sense),
        }
    }
}

type Result<T> = std::result::Result<T, Sense>;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// The length of a CDB from its operation code's group (SPC-4 §4.2.5.1).
pub fn cdb_len(opcode: u8) -> usize {
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 16,
    }
}

/// How many bytes of data-out a CDB asks for (the residual of a write is measured
/// against it); `None` for an opcode this unit does not know.
pub fn data_out_len(cdb: &[u8], block_size: u32) -> Option<u64> {
    let bs = u64::from(block_size);
    let op = *cdb.first()?;
    if cdb.len() < cdb_len(op) {
        return None;
    }
    Some(match op {
        op::WRITE_6 => bs * if cdb[4] == 0 { 256 } else { u64::from(cdb[4]) },
        op::WRITE_10 => bs * u64::from(be16(cdb, 7)),
        op::WRITE_12 => bs * u64::from(be32(cdb, 6)),
        op::WRITE_16 => bs * u64::from(be32(cdb, 10)),
        op::UNMAP => u64::from(be16(cdb, 7)),
        op::WRITE_SAME_10 | op::WRITE_SAME_16 if cdb[1] & 0x01 == 0 => bs,
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => 0,
        op::TEST_UNIT_READY
        | op::SYNCHRONIZE_CACHE_10
        | op::SYNCHRONIZE_CACHE_16
        | op::START_STOP_UNIT => 0,
        _ => return None,
    })
}

/// Operation codes.
mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
}

/// A logical unit: a block device with its identity.
pub struct Lu {
    dev: Arc<dyn BlockDevice>,
    id: Identity,
}

impl Lu {
    /// A logical unit over `dev`.
    pub fn new(dev: Arc<dyn BlockDevice>, id: Identity) -> Lu {
        Lu { dev, id }
    }

    /// The device.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    fn block_size(&self) -> u64 {
        u64::from(self.dev.block_size().max(1))
    }

    fn blocks(&self) -> u64 {
        self.dev.size() / self.block_size()
    }

    /// Runs one command addressed to `lun` (only LUN 0 exists). `data_out` is what the
    /// initiator sent (empty for commands that read).
    pub fn execute(&self, lun: u64, cdb: &[u8], data_out: &[u8]) -> Outcome {
        let Some(&opcode) = cdb.first() else {
            return Outcome::check(Sense::INVALID_OPCODE);
        };
        if cdb.len() < cdb_len(opcode) {
            return Outcome::check(Sense::INVALID_FIELD_IN_CDB);
        }
        // SAM-5 §4.6.4: LUN 0 as the 8-byte single-level format. Other LUNs answer
        // INQUIRY with "no logical unit" and REPORT LUNS; the rest is refused.
        if lun != 0 {
            return match opcode {
                op::INQUIRY => {
                    let mut d = vec![0u8; 36];
                    d[0] = 0x7f;
                    d[3] = 0x12;
                    d[4] = 31;
                    self.finish(Ok(d), be16(cdb, 3) as usize)
                }
                op::REPORT_LUNS => self.report_luns(cdb),
                op::REQUEST_SENSE => self.request_sense(cdb, Sense::LUN_NOT_SUPPORTED),
                _ => Outcome::check(Sense::LUN_NOT_SUPPORTED),
            };
        }
        let result = match opcode {
            op::TEST_UNIT_READY | op::START_STOP_UNIT => Ok(Vec::new()),
            op::REQUEST_SENSE => return self.request_sense(cdb, Sense::NO_SENSE),
            op::INQUIRY => return self.inquiry(cdb),
            op::REPORT_LUNS => return self.report_luns(cdb),
            op::READ_CAPACITY_10 => Ok(self.read_capacity_10()),
            op::SERVICE_ACTION_IN_16 if cdb[1] & 0x1f == 0x10 => {
                return self.finish(Ok(self.read_capacity_16()), be32(cdb, 10) as usize);
            }
            op::SERVICE_ACTION_IN_16 => Err(Sense::INVALID_FIELD_IN_CDB),
            op::MODE_SENSE_6 | op::MODE_SENSE_10 => return self.mode_sense(cdb),
            op::READ_6 => {
                let lba = u64::from(be32(cdb, 0) & 0x001f_ffff);
                let len = if cdb[4] == 0 { 256 } else { u32::from(cdb[4]) };
                self.read(lba, len)
            }
            op::READ_10 => {
                self.read_checked(cdb[1], u64::from(be32(cdb, 2)), u32::from(be16(cdb, 7)))
            }
            op::READ_12 => self.read_checked(cdb[1], u64::from(be32(cdb, 2)), be32(cdb, 6)),
            op::READ_16 => self.read_checked(cdb[1], be64(cdb, 2), be32(cdb, 10)),
            op::WRITE_6 => {
                let lba = u64::from(be32(cdb, 0) & 0x001f_ffff);
                let len = if cdb[4] == 0 { 256 } else { u32::from(cdb[4]) };
                self.write(lba, len, false, data_out)
            }
            op::WRITE_10 => self.write_checked(
                cdb[1],
                u64::from(be32(cdb, 2)),
                u32::from(be16(cdb, 7)),
                data_out,
            ),
            op::WRITE_12 => {
                self.write_checked(cdb[1], u64::from(be32(cdb, 2)), be32(cdb, 6), data_out)
            }
            op::WRITE_16 => self.write_checked(cdb[1], be64(cdb, 2), be32(cdb, 10), data_out),
            op::SYNCHRONIZE_CACHE_10 => self.sync(u64::from(be32(cdb, 2)), u64::from(be16(cdb, 7))),
            op::SYNCHRONIZE_CACHE_16 => self.sync(be64(cdb, 2), u64::from(be32(cdb, 10))),
            op::UNMAP if self.dev.can_unmap() => self.unmap(cdb, data_out),
            op::WRITE_SAME_10 if self.dev.can_unmap() => self.write_same(
                cdb[1],
                u64::from(be32(cdb, 2)),
                u64::from(be16(cdb, 7)),
                data_out,
            ),
            op::WRITE_SAME_16 if self.dev.can_unmap() => {
                self.write_same(cdb[1], be64(cdb, 2), u64::from(be32(cdb, 10)), data_out)
            }
            _ => Err(Sense::INVALID_OPCODE),
        };
        self.finish(result, usize::MAX)
    }

    fn finish(&self, result: Result<Vec<u8>>, alloc: usize) -> Outcome {
        match result {
            Ok(mut d) => {
                d.truncate(alloc);
                Outcome::good(d)
            }
            Err(s) => Outcome::check(s),
        }
    }

    /// REQUEST SENSE (SPC-4 §6.39): sense is reported with every CHECK CONDITION
    /// (autosense), so nothing is pending here.
    fn request_sense(&self, cdb: &[u8], sense: Sense) -> Outcome {
        if cdb[1] & 0x01 != 0 {
            // DESC: descriptor format is not supported.
            return Outcome::check(Sense::INVALID_FIELD_IN_CDB);
        }
        self.finish(Ok(sense.fixed().to_vec()), usize::from(cdb[4]))
    }

    /// INQUIRY (SPC-4 §6.6).
    fn inquiry(&self, cdb: &[u8]) -> Outcome {
        let alloc = usize::from(be16(cdb, 3));
        let evpd = cdb[1] & 0x01 != 0;
        if cdb[1] & 0x02 != 0 {
            return Outcome::check(Sense::INVALID_FIELD_IN_CDB); // CMDDT, obsolete
        }
        let page = cdb[2];
        if !evpd {
            if page != 0 {
                return Outcome::check(Sense::INVALID_FIELD_IN_CDB);
            }
            return self.finish(Ok(self.standard_inquiry()), alloc);
        }
        let body = match page {
            0x00 => Ok(vec![0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]),
            0x80 => Ok(self.id.serial.as_bytes().to_vec()),
            0x83 => Ok(self.device_identification()),
            0xb0 => Ok(self.block_limits()),
            0xb1 => {
                let mut d = vec![0u8; 0x3c];
                d[1] = 0x01; // MEDIUM ROTATION RATE: non-rotating medium
                Ok(d)
            }
            0xb2 => {
                let mut d = vec![0u8; 4];
                if self.dev.can_unmap() {
                    d[1] = 0x80 | 0x40 | 0x20 | 0x04; // LBPU, LBPWS, LBPWS10, LBPRZ
                    d[2] = 0x02; // PROVISIONING TYPE: thin
                }
                Ok(d)
            }
            _ => Err(Sense::INVALID_FIELD_IN_CDB),
        };
        let result = body.and_then(|body| {
            let len = u16::try_from(body.len()).map_err(|_| Sense::INVALID_FIELD_IN_CDB)?;
            let mut d = vec![0x00, page];
            d.extend_from_slice(&len.to_be_bytes());
            d.extend_from_slice(&body);
            Ok(d)
        });
        self.finish(result, alloc)
    }

    fn standard_inquiry(&self) -> Vec<u8> {
        let mut d = vec![0u8; 66];
        d[0] = 0x00; // connected, direct-access block device
        d[2] = 0x06; // VERSION: SPC-4
        d[3] = 0x12; // HISUP, RESPONSE DATA FORMAT 2
        d[4] = (d.len() - 5) as u8;
        d[7] = 0x02; // CMDQUE
        put_ascii(&mut d[8..16], &self.id.vendor);
        put_ascii(&mut d[16..32], &self.id.product);
        put_ascii(&mut d[32..36], &self.id.revision);
        // Version descriptors (SPC-4 §6.6.2, table 142): SAM-5, iSCSI, SPC-4, SBC-3.
        for (i, v) in [0x00a0u16, 0x0960, 0x0460, 0x04c0].iter().enumerate() {
            d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
        }
        d
    }

    /// VPD 0x83 (SPC-4 §7.8.6): an NAA locally assigned designator for the LU, a T10
    /// vendor ID, the target's SCSI name string and the relative target port.
    fn device_identification(&self) -> Vec<u8> {
        let mut d = Vec::new();
        // NAA, binary, LU association: NAA 3 (locally assigned), 60 bits of ours.
        d.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
        d.extend_from_slice(&((3u64 << 60) | (self.id.naa_id & ((1 << 60) - 1))).to_be_bytes());
        // T10 vendor ID, ASCII, LU association.
        let mut t10 = format!("{:<8}", self.id.vendor).into_bytes();
        t10.truncate(8);
        t10.extend_from_slice(self.id.serial.as_bytes());
        d.extend_from_slice(&[0x02, 0x01, 0x00, t10.len() as u8]);
        d.extend_from_slice(&t10);
        // SCSI name string, UTF-8, target device association, protocol iSCSI (PIV).
        let mut name = self.id.target_name.clone().into_bytes();
        name.truncate(220);
        name.push(0);
        while !name.len().is_multiple_of(4) {
            name.push(0);
        }
        d.extend_from_slice(&[0x53, 0xa8, 0x00, name.len() as u8]);
        d.extend_from_slice(&name);
        // Relative target port 1, binary, target port association, protocol iSCSI.
        d.extend_from_slice(&[0x51, 0x94, 0x00, 0x04, 0, 0, 0, 1]);
        d
    }

    /// VPD 0xB0 (SBC-3 §6.5.3).
    fn block_limits(&self) -> Vec<u8> {
        let mut d = vec![0u8; 0x3c];
        let max_blocks = MAX_TRANSFER_BYTES / self.dev.block_size().max(1);
        d[0] = 0x01; // WSNZ: WRITE SAME with zero blocks is refused
        d[2..4].copy_from_slice(&1u16.to_be_bytes()); // optimal granularity
        d[4..8].copy_from_slice(&max_blocks.to_be_bytes());
        d[8..12].copy_from_slice(&(max_blocks / 8).to_be_bytes());
        if self.dev.can_unmap() {
            d[16..20].copy_from_slice(&u32::MAX.to_be_bytes()); // max unmap LBA count
            d[20..24].copy_from_slice(&MAX_UNMAP_DESCRIPTORS.to_be_bytes());
            d[24..28].copy_from_slice(&1u32.to_be_bytes()); // unmap granularity
            // MAXIMUM WRITE SAME LENGTH: the transfer limit too, so that an initiator
            // can write what it may unmap in one command.
            d[32..40].copy_from_slice(&u64::from(max_blocks).to_be_bytes());
        }
        d
    }

    /// REPORT LUNS (SPC-4 §6.33): LUN 0 alone.
    fn report_luns(&self, cdb: &[u8]) -> Outcome {
        let alloc = be32(cdb, 6) as usize;
        if !matches!(cdb[2], 0x00..=0x02 | 0x10..=0x12) {
            return Outcome::check(Sense::INVALID_FIELD_IN_CDB);
        }
        if alloc < 16 {
            return Outcome::check(Sense::INVALID_FIELD_IN_CDB);
        }
        let mut d = vec![0u8; 16];
        let list_len: u32 = if cdb[2] == 0x01 { 0 } else { 8 };
        d[0..4].copy_from_slice(&list_len.to_be_bytes());
        d.truncate(8 + list_len as usize);
        self.finish(Ok(d), alloc)
    }

    /// READ CAPACITY (10) (SBC-3 §5.15).
    fn read_capacity_10(&self) -> Vec<u8> {
        let last = self.blocks().saturating_sub(1);
        let last = u32::try_from(last).unwrap_or(u32::MAX);
        let mut d = last.to_be_bytes().to_vec();
        d.extend_from_slice(&self.dev.block_size().to_be_bytes());
        d
    }

    /// READ CAPACITY (16) (SBC-3 §5.16).
    fn read_capacity_16(&self) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0..8].copy_from_slice(&self.blocks().saturating_sub(1).to_be_bytes());
        d[8..12].copy_from_slice(&self.dev.block_size().to_be_bytes());
        if self.dev.can_unmap() {
            d[14] = 0x80 | 0x40; // LBPME, LBPRZ
        }
        d
    }

    fn check_range(&self, lba: u64, blocks: u64) -> Result<()> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.blocks() => Ok(()),
            _ => Err(Sense::LBA_OUT_OF_RANGE),
        }
    }

    fn read_checked(&self, flags: u8, lba: u64, blocks: u32) -> Result<Vec<u8>> {
        if flags & 0xe0 != 0 {
            return Err(Sense::INVALID_FIELD_IN_CDB); // RDPROTECT: no protection information
        }
        self.read(lba, blocks)
    }

    fn transfer_bytes(&self, blocks: u32) -> Result<usize> {
        let bytes = u64::from(blocks) * self.block_size();
        if bytes > u64::from(MAX_TRANSFER_BYTES) {
            return Err(Sense::INVALID_FIELD_IN_CDB);
        }
        Ok(bytes as usize)
    }

    fn read(&self, lba: u64, blocks: u32) -> Result<Vec<u8>> {
        self.check_range(lba, u64::from(blocks))?;
        let bytes = self.transfer_bytes(blocks)?;
        let mut buf = vec![0u8; bytes];
        if bytes > 0 {
            self.dev
                .read_at(&mut buf, lba * self.block_size())
                .map_err(|e| Sense::from_io(&e, false))?;
        }
        Ok(buf)
    }

    fn write_checked(&self, flags: u8, lba: u64, blocks: u32, data: &[u8]) -> Result<Vec<u8>> {
        if flags & 0xe0 != 0 {
            return Err(Sense::INVALID_FIELD_IN_CDB); // WRPROTECT
        }
        self.write(lba, blocks, flags & 0x08 != 0, data)
    }

    fn write(&self, lba: u64, blocks: u32, fua: bool, data: &[u8]) -> Result<Vec<u8>> {
        if self.dev.read_only() {
            return Err(Sense::WRITE_PROTECTED);
        }
        self.check_range(lba, u64::from(blocks))?;
        let mut bytes = self.transfer_bytes(blocks)?;
        if data.len() < bytes {
            // The initiator's Expected Data Transfer Length is short of the CDB's: write
            // the whole blocks it sent; the iSCSI layer reports the overflow residual
            // (what libiscsi's iSCSIResiduals tests and tgt do).
            let bs = self.block_size() as usize;
            bytes = data.len() / bs * bs;
        }
        if bytes > 0 {
            let offset = lba * self.block_size();
            self.dev
                .write_at(&data[..bytes], offset)
                .map_err(|e| Sense::from_io(&e, true))?;
            if fua {
                self.dev.flush().map_err(|e| Sense::from_io(&e, true))?;
            }
        }
        Ok(Vec::new())
    }

    fn sync(&self, lba: u64, blocks: u64) -> Result<Vec<u8>> {
        self.check_range(lba, blocks)?;
        self.dev.flush().map_err(|e| Sense::from_io(&e, true))?;
        Ok(Vec::new())
    }

    /// UNMAP (SBC-3 §5.28).
    fn unmap(&self, cdb: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        if self.dev.read_only() {
            return Err(Sense::WRITE_PROTECTED);
        }
        if cdb[1] & 0x01 != 0 {
            return Err(Sense::INVALID_FIELD_IN_CDB); // ANCHOR
        }
        let param_len = usize::from(be16(cdb, 7));
        if param_len == 0 {
            return Ok(Vec::new());
        }
        if param_len < 8 || data.len() < param_len {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        }
        let desc_len = usize::from(be16(data, 2));
        if !desc_len.is_multiple_of(16) || 8 + desc_len > param_len {
            return Err(Sense::PARAMETER_LIST_LENGTH);
        }
        if desc_len / 16 > MAX_UNMAP_DESCRIPTORS as usize {
            return Err(Sense::INVALID_FIELD_IN_PARAMETER_LIST);
        }
        let descriptors: Vec<(u64, u64)> = data[8..8 + desc_len]
            .chunks_exact(16)
            .map(|d| (be64(d, 0), u64::from(be32(d, 8))))
            .collect();
        for &(lba, n) in &descriptors {
            self.check_range(lba, n)?;
        }
        let bs = self.block_size();
        for (lba, n) in descriptors {
            if n > 0 {
                self.dev
                    .unmap(lba * bs, n * bs)
                    .map_err(|e| Sense::from_io(&e, true))?;
            }
        }
        Ok(Vec::new())
    }

    /// WRITE SAME (10)/(16) (SBC-3 §5.41, §5.42): with UNMAP and a zero block the range
    /// is unmapped (it then reads as zeros, LBPRZ); otherwise the block is written over it.
    fn write_same(&self, flags: u8, lba: u64, blocks: u64, data: &[u8]) -> Result<Vec<u8>> {
        if self.dev.read_only() {
            return Err(Sense::WRITE_PROTECTED);
        }
        let max_blocks = u64::from(MAX_TRANSFER_BYTES) / self.block_size();
        if flags & 0xe0 != 0 || flags & 0x10 != 0 || blocks == 0 || blocks > max_blocks {
            return Err(Sense::INVALID_FIELD_IN_CDB); // WRPROTECT, ANCHOR, WSNZ, limit
        }
        self.check_range(lba, blocks)?;
        let bs = self.block_size();
        let ndob = flags & 0x01 != 0;
        let zero_block = ndob
            || data
                .get(..bs as usize)
                .is_some_and(|b| b.iter().all(|&x| x == 0));
        if !ndob && data.len() < bs as usize {
            return Err(Sense::DATA_PHASE_ERROR);
        }
        let r = if zero_block && flags & 0x08 != 0 {
            self.dev.unmap(lba * bs, blocks * bs)
        } else if zero_block {
            self.dev.write_zeroes(lba * bs, blocks * bs)
        } else {
            let block = &data[..bs as usize];
            let per = (65536 / bs).max(1);
            let chunk = block.repeat(per as usize);
            let mut done = 0;
            let mut r = Ok(());
            while done < blocks && r.is_ok() {
                let n = (blocks - done).min(per);
                r = self
                    .dev
                    .write_at(&chunk[..(n * bs) as usize], (lba + done) * bs);
                done += n;
            }
            r
        };
        r.map_err(|e| Sense::from_io(&e, true))?;
        Ok(Vec::new())
    }

    /// MODE SENSE (6)/(10) (SPC-4 §6.11, §6.12): the caching page (0x08, write cache
    /// enabled: SYNCHRONIZE CACHE matters), the control page (0x0A), and all pages
    /// (0x3F); WP in the device-specific parameter on read-only units.
    fn mode_sense(&self, cdb: &[u8]) -> Outcome {
        let ten = cdb[0] == op::MODE_SENSE_10;
        let dbd = cdb[1] & 0x08 != 0;
        let llbaa = ten && cdb[1] & 0x10 != 0;
        let pc = cdb[2] >> 6;
        let page = cdb[2] & 0x3f;
        let subpage = cdb[3];
        let alloc = if ten {
            usize::from(be16(cdb, 7))
        } else {
            usize::from(cdb[4])
        };
        if pc == 3 {
            return Outcome::check(Sense::SAVING_NOT_SUPPORTED);
        }
        if subpage != 0 && !(page == 0x3f && subpage == 0xff) {
            return Outcome::check(Sense::INVALID_FIELD_IN_CDB);
        }
        let changeable = pc == 1;
        let caching = || {
            let mut p = vec![0u8; 20];
            p[0] = 0x08;
            p[1] = 18;
            if !changeable {
                p[2] = 0x04; // WCE
            }
            p
        };
        let control = || {
            let mut p = vec![0u8; 12];
            p[0] = 0x0a;
            p[1] = 10;
            if !changeable {
                p[2] = 0x02; // GLTSD
                p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
                p[8] = 0xff; // BUSY TIMEOUT PERIOD: unlimited
                p[9] = 0xff;
            }
            p
        };
        let pages = match page {
            0x08 => caching(),
            0x0a => control(),
            0x3f => [caching(), control()].concat(),
            _ => return Outcome::check(Sense::INVALID_FIELD_IN_CDB),
        };
        let mut dev_specific = 0x10; // DPOFUA
        if self.dev.read_only() {
            dev_specific |= 0x80; // WP
        }
        let blocks = self.blocks();
        let bs = self.dev.block_size();
        let bd: Vec<u8> = if dbd {
            Vec::new()
        } else if llbaa {
            let mut b = blocks.to_be_bytes().to_vec();
            b.extend_from_slice(&[0, 0, 0, 0]);
            b.extend_from_slice(&bs.to_be_bytes());
            b
        } else {
            let mut b = u32::try_from(blocks)
                .unwrap_or(u32::MAX)
                .to_be_bytes()
                .to_vec();
            b.push(0);
            b.extend_from_slice(&bs.to_be_bytes()[1..]);
            b
        };
        let mut d = if ten {
            let mut h = vec![0u8; 8];
            h[3] = dev_specific;
            h[4] = u8::from(llbaa);
            h[6..8].copy_from_slice(&(bd.len() as u16).to_be_bytes());
            h
        } else {
            vec![0, 0, dev_specific, bd.len() as u8]
        };
        d.extend_from_slice(&bd);
        d.extend_from_slice(&pages);
        if ten {
            let len = (d.len() - 2) as u16;
            d[0..2].copy_from_slice(&len.to_be_bytes());
        } else {
            d[0] = (d.len() - 1) as u8;
        }
        self.finish(Ok(d), alloc)
    }
}

fn put_ascii(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    for (d, c) in dst
        .iter_mut()
        .zip(s.bytes().filter(|c| c.is_ascii_graphic() || *c == b' '))
    {
        *d = c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::MemDisk;

    fn lu(read_only: bool) -> (Lu, Arc<MemDisk>) {
        let disk = Arc::new(MemDisk::new(
            (0..8192u32).map(|i| (i % 251) as u8).collect(),
            read_only,
        ));
        (
            Lu::new(disk.clone(), Identity::for_target("iqn.2026-01.test:disk")),
            disk,
        )
    }

    #[test]
    fn inquiry_and_vpd() {
        let (lu, _) = lu(false);
        let std = lu.execute(0, &[0x12, 0, 0, 0, 255, 0], &[]);
        assert_eq!(std.status, status::GOOD);
        assert_eq!(&std.data[8..15], b"PROVISN");
        let pages = lu.execute(0, &[0x12, 1, 0, 0, 255, 0], &[]);
        assert_eq!(pages.data, [0, 0, 0, 6, 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2]);
        for p in [0x80, 0x83, 0xb0, 0xb1, 0xb2] {
            let o = lu.execute(0, &[0x12, 1, p, 0, 255, 0], &[]);
            assert_eq!((o.status, o.data[1]), (status::GOOD, p));
        }
        let bad = lu.execute(0, &[0x12, 1, 0x99, 0, 255, 0], &[]);
        assert_eq!(bad.sense, Some(Sense::INVALID_FIELD_IN_CDB));
        let short = lu.execute(0, &[0x12, 0, 0, 0, 5, 0], &[]);
        assert_eq!(short.data.len(), 5);
    }

    #[test]
    fn read_write_and_ranges() {
        let (lu, disk) = lu(false);
        let w = lu.execute(0, &[0x2a, 0, 0, 0, 0, 2, 0, 0, 1, 0], &[9u8; 512]);
        assert_eq!(w.status, status::GOOD);
        assert_eq!(&disk.contents()[1024..1536], &[9u8; 512][..]);
        let r = lu.execute(0, &[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0], &[]);
        assert_eq!(r.data, vec![9u8; 512]);
        let oob = lu.execute(0, &[0x28, 0, 0, 0, 0, 15, 0, 0, 2, 0], &[]);
        assert_eq!(oob.sense, Some(Sense::LBA_OUT_OF_RANGE));
        let cap = lu.execute(0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
        assert_eq!(cap.data, [0, 0, 0, 15, 0, 0, 2, 0]);
        let unknown = lu.execute(0, &[0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
        assert_eq!(unknown.sense, Some(Sense::INVALID_OPCODE));
    }

    #[test]
    fn read_only_unit() {
        let (lu, _) = lu(true);
        let w = lu.execute(0, &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[0u8; 512]);
        assert_eq!(w.sense, Some(Sense::WRITE_PROTECTED));
        let ms = lu.execute(0, &[0x1a, 0, 0x3f, 0, 255, 0], &[]);
        assert_eq!(ms.data[2] & 0x80, 0x80);
        assert_eq!(ms.data[0] as usize, ms.data.len() - 1);
        let ms10 = lu.execute(0, &[0x5a, 0, 0x08, 0, 0, 0, 0, 0, 255, 0], &[]);
        assert_eq!(ms10.data[3] & 0x80, 0x80);
    }

    #[test]
    fn unmap_and_write_same() {
        let (lu, disk) = lu(false);
        let mut param = vec![0, 22, 0, 16, 0, 0, 0, 0];
        param.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0]);
        let u = lu.execute(0, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &param);
        assert_eq!(u.status, status::GOOD);
        assert!(disk.contents()[512..1536].iter().all(|&b| b == 0));
        let mut cdb = [0u8; 16];
        cdb[0] = 0x93;
        cdb[9] = 4;
        cdb[13] = 2;
        let ws = lu.execute(0, &cdb, &[7u8; 512]);
        assert_eq!(ws.status, status::GOOD);
        assert_eq!(&disk.contents()[2048..3072], &[7u8; 1024][..]);
    }
}
