//! Entry points of the fuzz targets (`fuzz/fuzz_targets/vhd_*.rs`), kept here so that
//! a plain `#[test]` replays their seed corpora on stable Rust. Each takes arbitrary
//! bytes and must never panic, hang, or allocate more than the input justifies.

use std::sync::Arc;

use crate::engine::disk::Disk;
use crate::engine::image::{ChecksumPolicy, Image, SizePolicy};
use crate::engine::storage::MemStorage;
use crate::format::footer::{FOOTER_LEN, Footer};
use crate::format::header::DynamicHeader;

/// Footer: parse, validate, and check that emit/parse round-trips.
pub fn footer(data: &[u8]) {
    if let Ok(f) = Footer::parse(data, 0) {
        let _ = f.validate();
        let _ = Footer::checksum_ok(data);
        let bytes = f.to_bytes();
        let back = Footer::parse(&bytes, 0).expect("an emitted footer parses");
        assert_eq!(
            Footer {
                checksum: f.checksum,
                ..back
            },
            f
        );
        assert!(Footer::checksum_ok(&bytes));
        let _ = f.geometry.size();
        let _ = crate::format::footer::Geometry::for_size(f.current_size);
    }
    let _ = FOOTER_LEN;
}

/// Dynamic header: parse, validate against a few sizes, emit/parse round-trip.
pub fn dynamic_header(data: &[u8]) {
    if let Ok(h) = DynamicHeader::parse(data, 512) {
        let _ = DynamicHeader::checksum_ok(data);
        for size in [0, 512, 1 << 20, u64::MAX] {
            let _ = h.validate(size);
        }
        let _ = (h.bitmap_len(), h.bat_len());
        let bytes = h.to_bytes();
        let back = DynamicHeader::parse(&bytes[..], 512).expect("an emitted header parses");
        assert_eq!(back.locators, h.locators);
        assert_eq!(back.block_size, h.block_size);
        assert!(DynamicHeader::checksum_ok(&bytes[..]));
    }
}

/// Whole image over bytes: open (lenient and strict, both size policies), read at a
/// few places, map, and check.
pub fn open_read(data: &[u8]) {
    for (checksums, size_policy) in [
        (ChecksumPolicy::Lenient, SizePolicy::CurrentSize),
        (ChecksumPolicy::Strict, SizePolicy::Chs),
    ] {
        let storage = Arc::new(MemStorage::read_only(data.to_vec()));
        let Ok(img) = Image::from_storage(storage, true, checksums, size_policy, None) else {
            continue;
        };
        let size = img.size();
        let mut buf = vec![0u8; 65536];
        for at in [0, size / 2, size.saturating_sub(65536)] {
            let n = (size - at.min(size)).min(65536) as usize;
            img.read_at(&mut buf[..n], at.min(size))
                .expect("reads inside the disk succeed on a valid image");
        }
        let _ = img.read_at(&mut buf[..1], size);
        if let Ok(map) = img.allocation(0, size) {
            let total: u64 = map.iter().map(|e| e.len).sum();
            assert_eq!(total, size);
        }
        let _ = crate::tools::check::check(&img);
    }
}
