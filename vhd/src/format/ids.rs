//! The footer's identifiers and timestamps (SPECS §2.1): unique ids as random UUIDs
//! and their text form, and the time in seconds since the VHD epoch.

/// Formats 16 bytes as a UUID string (bytes in stored order).
pub fn format_uuid(id: &[u8; 16]) -> String {
    let h: Vec<String> = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// A random (version 4) UUID from the operating system's generator, falling back to
/// a hash of the time and process id when /dev/urandom is unavailable.
pub fn new_uuid() -> [u8; 16] {
    use std::io::Read;
    let mut id = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .is_ok();
    if !ok {
        use std::hash::{BuildHasher, Hasher};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        for (i, chunk) in id.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(now.as_nanos());
            h.write_u32(std::process::id());
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// Now, in seconds since 2000-01-01 UTC (saturating).
pub fn vhd_now() -> u32 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(unix.saturating_sub(super::footer::VHD_EPOCH_UNIX)).unwrap_or(u32::MAX)
}
