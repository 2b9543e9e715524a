//! Partition tables, parsed from the first bytes of a disk: MBR primary partitions and
//! GPT (UEFI 2.10 §5.2 and §5.3). Logical partitions of an extended MBR partition are
//! not listed. Sectors are 512 bytes (a VHD's).
//!
//! ```
//! use provision_core::boot_files::partitions::{Table, partition_table};
//! let mut head = vec![0u8; 64 * 1024];
//! // One Linux partition (0x83) from sector 2048, 4096 sectors long.
//! head[446 + 4] = 0x83;
//! head[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
//! head[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
//! head[510..512].copy_from_slice(&[0x55, 0xaa]);
//! let Table::Mbr(parts) = partition_table(&head, 8 << 20).unwrap() else { panic!() };
//! assert_eq!((parts[0].number, parts[0].start, parts[0].len), (1, 1 << 20, 2 << 20));
//! ```

use crate::error::{Error, ErrorKind, Result};

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// How much of the disk's head [`partition_table`] wants: the MBR, the GPT header and
/// a GPT entry array of up to 128 entries of 128 bytes where partitioning tools put it.
pub const HEAD_LEN: usize = 64 * 1024;

const MBR_SIGNATURE: usize = 510;
const MBR_ENTRIES: usize = 446;
const MBR_ENTRY_LEN: usize = 16;
const MBR_PROTECTIVE: u8 = 0xee;
const MBR_EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];

const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
const GPT_HEADER_SIZE: usize = 12;
const GPT_HEADER_CRC: usize = 16;
const GPT_ENTRIES_LBA: usize = 72;
const GPT_ENTRY_COUNT: usize = 80;
const GPT_ENTRY_SIZE: usize = 84;
const GPT_ENTRIES_CRC: usize = 88;
const GPT_MIN_HEADER: usize = 92;
const GPT_ENTRY_FIRST_LBA: usize = 32;
const GPT_ENTRY_LAST_LBA: usize = 40;

/// One partition: its number in the table (from 1), where it starts and how long it is,
/// in bytes from the start of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Its number: the MBR slot (1 to 4) or the GPT entry (from 1).
    pub number: u32,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// What the head of a disk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// No partition table: a file system may start at byte 0 (a "superfloppy").
    None,
    /// An MBR's primary partitions, in slot order.
    Mbr(Vec<Partition>),
    /// A GPT's used entries, in entry order.
    Gpt(Vec<Partition>),
}

impl Table {
    /// The partitions, or the whole disk as one when there is no table.
    pub fn volumes(&self, disk_size: u64) -> Vec<Partition> {
        match self {
            Table::None => vec![Partition {
                number: 0,
                start: 0,
                len: disk_size,
            }],
            Table::Mbr(p) | Table::Gpt(p) => p.clone(),
        }
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::Invalid, message)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The partition table in `head`, the first bytes of a disk of `disk_size` bytes
/// ([`HEAD_LEN`], or the whole disk when smaller). Partitions reaching past the disk,
/// a GPT whose checksums do not match or whose entries lie beyond `head` are errors
/// that say so; a head without an MBR signature, or whose MBR slots are not an MBR's
/// (a FAT boot sector), is [`Table::None`].
pub fn partition_table(head: &[u8], disk_size: u64) -> Result<Table> {
    if head.len() < 512 || head[MBR_SIGNATURE..MBR_SIGNATURE + 2] != [0x55, 0xaa] {
        return Ok(Table::None);
    }
    let slots: Vec<&[u8]> = (0..4)
        .map(|i| &head[MBR_ENTRIES + i * MBR_ENTRY_LEN..][..MBR_ENTRY_LEN])
        .collect();
    // A slot's status byte is 0x00 or 0x80; anything else is a boot sector's code.
    if slots.iter().any(|s| s[0] & 0x7f != 0) {
        return Ok(Table::None);
    }
    if slots.iter().any(|s| s[4] == MBR_PROTECTIVE) {
        return gpt(head, disk_size).map(Table::Gpt);
    }
    let mut parts = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let kind = slot[4];
        let first = u64::from(u32_at(slot, 8));
        let sectors = u64::from(u32_at(slot, 12));
        if kind == 0 || sectors == 0 || MBR_EXTENDED.contains(&kind) {
            continue;
        }
        let number = i as u32 + 1;
        parts.push(within(number, first, sectors, disk_size, "MBR")?);
    }
    if parts.is_empty() {
        // An MBR signature over empty slots says nothing: look for a file system at 0.
        return Ok(Table::None);
    }
    Ok(Table::Mbr(parts))
}

fn within(number: u32, first: u64, sectors: u64, disk_size: u64, table: &str) -> Result<Partition> {
    let start = first.checked_mul(SECTOR);
    let len = sectors.checked_mul(SECTOR);
    match (start, len) {
        (Some(start), Some(len)) if start.checked_add(len).is_some_and(|e| e <= disk_size) => {
            Ok(Partition { number, start, len })
        }
        _ => Err(invalid(format!(
            "{table} partition {number} (sector {first}, {sectors} sectors) reaches past the \
             disk's {disk_size} bytes"
        ))),
    }
}

fn gpt(head: &[u8], disk_size: u64) -> Result<Vec<Partition>> {
    let header = head
        .get(SECTOR as usize..2 * SECTOR as usize)
        .ok_or_else(|| invalid("GPT header: the disk is shorter than two sectors".into()))?;
    if &header[..8] != GPT_SIGNATURE {
        return Err(invalid(
            "protective MBR without a GPT header (no `EFI PART` in sector 1)".into(),
        ));
    }
    let size = u32_at(header, GPT_HEADER_SIZE) as usize;
    if !(GPT_MIN_HEADER..=header.len()).contains(&size) {
        return Err(invalid(format!("GPT header size {size} out of range")));
    }
    let mut copy = header[..size].to_vec();
    copy[GPT_HEADER_CRC..GPT_HEADER_CRC + 4].fill(0);
    if crc32(&copy) != u32_at(header, GPT_HEADER_CRC) {
        return Err(invalid("GPT header checksum does not match".into()));
    }
    let entries_lba = u64_at(header, GPT_ENTRIES_LBA);
    let count = u32_at(header, GPT_ENTRY_COUNT) as usize;
    let entry_size = u32_at(header, GPT_ENTRY_SIZE) as usize;
    if entry_size < 128 || !entry_size.is_multiple_of(8) {
        return Err(invalid(format!("GPT entry size {entry_size} out of range")));
    }
    let array = entries_lba
        .checked_mul(SECTOR)
        .and_then(|s| usize::try_from(s).ok())
        .zip(count.checked_mul(entry_size))
        .and_then(|(start, len)| head.get(start..start.checked_add(len)?))
        .ok_or_else(|| {
            invalid(format!(
                "GPT entry array ({count} entries of {entry_size} bytes at sector \
                 {entries_lba}) lies beyond the first {} bytes read",
                head.len()
            ))
        })?;
    if crc32(array) != u32_at(header, GPT_ENTRIES_CRC) {
        return Err(invalid("GPT entry array checksum does not match".into()));
    }
    let mut parts = Vec::new();
    for (i, entry) in array.chunks_exact(entry_size).enumerate() {
        if entry[..16].iter().all(|b| *b == 0) {
            continue;
        }
        let first = u64_at(entry, GPT_ENTRY_FIRST_LBA);
        let last = u64_at(entry, GPT_ENTRY_LAST_LBA);
        let number = i as u32 + 1;
        let sectors = last
            .checked_sub(first)
            .and_then(|n| n.checked_add(1))
            .ok_or_else(|| {
                invalid(format!(
                    "GPT partition {number} ends (sector {last}) before it starts ({first})"
                ))
            })?;
        parts.push(within(number, first, sectors, disk_size, "GPT")?);
    }
    Ok(parts)
}

/// The fuzz target `boot_partitions`: [`partition_table`] of `data` as a disk of its
/// own length (and of a larger one) must not panic, and every partition it lists must
/// lie within the disk.
pub fn check_partition_table(data: &[u8]) {
    for size in [data.len() as u64, u64::MAX] {
        if let Ok(table) = partition_table(data, size) {
            for p in table.volumes(size) {
                assert!(
                    p.start.checked_add(p.len).is_some_and(|end| end <= size),
                    "{p:?}"
                );
            }
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as GPT uses it).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: u64 = 64 << 20;

    fn mbr(slots: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut head = vec![0u8; HEAD_LEN];
        for (i, (kind, first, sectors)) in slots.iter().enumerate() {
            let s = MBR_ENTRIES + i * MBR_ENTRY_LEN;
            head[s + 4] = *kind;
            head[s + 8..s + 12].copy_from_slice(&first.to_le_bytes());
            head[s + 12..s + 16].copy_from_slice(&sectors.to_le_bytes());
        }
        head[510] = 0x55;
        head[511] = 0xaa;
        head
    }

    /// A GPT with `entries` (first, last LBA) in 128 entries at LBA 2.
    fn gpt_disk(entries: &[(u64, u64)]) -> Vec<u8> {
        let mut head = mbr(&[(MBR_PROTECTIVE, 1, u32::MAX)]);
        let mut array = vec![0u8; 128 * 128];
        for (i, (first, last)) in entries.iter().enumerate() {
            let e = &mut array[i * 128..][..128];
            e[..16].copy_from_slice(&[0xaf; 16]);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
        }
        head[1024..1024 + array.len()].copy_from_slice(&array);
        let h = &mut head[512..1024];
        h[..8].copy_from_slice(GPT_SIGNATURE);
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        head
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn mbr_lists_primary_partitions_and_skips_empty_and_extended_slots() {
        let head = mbr(&[
            (0x0e, 2048, 65536),
            (0, 0, 0),
            (0x05, 70000, 100),
            (0x83, 67584, 2048),
        ]);
        let Table::Mbr(parts) = partition_table(&head, DISK).unwrap() else {
            panic!("not an MBR")
        };
        assert_eq!(
            parts,
            [
                Partition {
                    number: 1,
                    start: 2048 * 512,
                    len: 65536 * 512
                },
                Partition {
                    number: 4,
                    start: 67584 * 512,
                    len: 2048 * 512
                },
            ]
        );
    }

    #[test]
    fn mbr_partition_past_the_disk_is_an_error_that_says_so() {
        let head = mbr(&[(0x83, 2048, u32::MAX)]);
        let e = partition_table(&head, DISK).unwrap_err().to_string();
        assert!(
            e.contains("MBR partition 1") && e.contains("past the disk"),
            "{e}"
        );
    }

    #[test]
    fn gpt_lists_used_entries_with_inclusive_last_sectors() {
        let head = gpt_disk(&[(2048, 4095), (4096, 8191)]);
        let Table::Gpt(parts) = partition_table(&head, DISK).unwrap() else {
            panic!("not a GPT")
        };
        assert_eq!(
            parts,
            [
                Partition {
                    number: 1,
                    start: 2048 * 512,
                    len: 2048 * 512
                },
                Partition {
                    number: 2,
                    start: 4096 * 512,
                    len: 4096 * 512
                },
            ]
        );
    }

    #[test]
    fn gpt_checksums_and_bounds_are_checked() {
        let mut head = gpt_disk(&[(2048, 4095)]);
        head[1024 + 32] ^= 1; // an entry changed after the checksum was taken
        let e = partition_table(&head, DISK).unwrap_err().to_string();
        assert!(e.contains("entry array checksum"), "{e}");
        let mut head = gpt_disk(&[(2048, 4095)]);
        head[512 + 72] = 0xff; // the entry array moved far away
        let e = partition_table(&head, DISK).unwrap_err().to_string();
        assert!(e.contains("header checksum"), "{e}");
        let head = gpt_disk(&[(4095, 2048)]);
        let e = partition_table(&head, DISK).unwrap_err().to_string();
        assert!(e.contains("before it starts"), "{e}");
        let head = gpt_disk(&[(2048, DISK / 512)]);
        let e = partition_table(&head, DISK).unwrap_err().to_string();
        assert!(
            e.contains("GPT partition 1") && e.contains("past the disk"),
            "{e}"
        );
    }

    #[test]
    fn not_a_disk_has_no_table() {
        assert_eq!(partition_table(&[], DISK).unwrap(), Table::None);
        assert_eq!(partition_table(&[0xff; 4096], DISK).unwrap(), Table::None);
        // A FAT boot sector: signature, but code where MBR slots would be.
        let mut fat = vec![0x90u8; 512];
        fat[510..].copy_from_slice(&[0x55, 0xaa]);
        assert_eq!(partition_table(&fat, DISK).unwrap(), Table::None);
        assert_eq!(
            Table::None.volumes(DISK),
            [Partition {
                number: 0,
                start: 0,
                len: DISK
            }]
        );
    }

    #[test]
    fn arbitrary_heads_never_panic() {
        let mut x = 0x1234_5678u32;
        for round in 0..2000 {
            let mut head = if round % 2 == 0 {
                mbr(&[(0xee, 1, 100)])
            } else {
                gpt_disk(&[(34, 99)])
            };
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let at = x as usize % 2048;
                head[at] = (x >> 24) as u8;
            }
            let len = x as usize % (head.len() + 1);
            let _ = partition_table(&head[..len], u64::from(x));
        }
    }
}
