//! Big-endian field access and the VHD checksum, shared by the on-disk structures.
//! Callers check lengths first: these helpers index within bounds they established.

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// One's complement of the byte sum, with the 4 bytes at `checksum_at` taken as zero
/// (SPECS §2.1, §2.2).
pub(crate) fn checksum(b: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u32 = 0;
    for (i, &x) in b.iter().enumerate() {
        if !(checksum_at..checksum_at + 4).contains(&i) {
            sum = sum.wrapping_add(u32::from(x));
        }
    }
    !sum
}
