//! Write overlays: RAM, spill file, quota, zeroes, allocation, over images and raw files.

mod common;

use std::sync::Arc;

use common::{pattern, read_all};
use vhd::{
    CreateOptions, Disk, ErrorKind, ExtentState, MemStorage, Overlay, OverlayLimits, RamBudget,
    RawDisk,
};

fn base(size: usize) -> Arc<dyn Disk> {
    let bytes = pattern(7, size);
    Arc::new(RawDisk::new(Arc::new(MemStorage::read_only(bytes))).unwrap())
}

#[test]
fn overlay_reads_base_until_written_and_never_touches_the_base() {
    let b = base(1 << 20);
    let before = read_all(b.as_ref());
    let o = Overlay::new(
        b.clone(),
        OverlayLimits {
            ram_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let mut model = before.clone();
    for (off, len) in [
        (100usize, 10usize),
        (4090, 20),
        (65536, 8192),
        (1_048_000, 576),
    ] {
        let d = pattern(off as u64, len);
        o.write_at(&d, off as u64).unwrap();
        model[off..off + len].copy_from_slice(&d);
    }
    assert_eq!(read_all(&o), model);
    assert_eq!(read_all(b.as_ref()), before);
    assert!(b.write_at(&[1], 0).is_err());
    let map = o.allocation(0, 1 << 20).unwrap();
    assert!(map.iter().all(|e| e.state == ExtentState::Data));
    o.discard();
    assert_eq!(read_all(&o), before);
}

#[test]
fn overlay_spills_past_its_ram_limit_and_stops_at_its_quota() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(1 << 20);
    let limits = OverlayLimits {
        ram_bytes: 16 << 10,
        spill_dir: Some(dir.path().to_path_buf()),
        quota_bytes: Some(64 << 10),
    };
    let o = Overlay::new(b.clone(), limits).unwrap();
    let mut model = read_all(b.as_ref());
    let d = pattern(1, 48 << 10);
    o.write_at(&d, 8192).unwrap();
    model[8192..8192 + d.len()].copy_from_slice(&d);
    assert_eq!(o.ram_bytes(), 16 << 10);
    assert_eq!(o.used_bytes(), 48 << 10);
    // The spill file is unlinked: the folder stays empty.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // 16 KiB of quota left: a 20 KiB write is refused, and changes nothing.
    let err = o.write_at(&vec![0xee; 20 << 10], 512 << 10).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSpace);
    assert_eq!(read_all(&o), model);
    // Rewriting chunks already held costs nothing.
    o.write_at(&[0x33; 4096], 8192).unwrap();
    model[8192..8192 + 4096].fill(0x33);
    assert_eq!(read_all(&o), model);
    o.write_at(&[0x44; 16 << 10], 900 << 10).unwrap();
    model[900 << 10..(900 << 10) + (16 << 10)].fill(0x44);
    assert_eq!(o.write_at(&[1], 0).unwrap_err().kind(), ErrorKind::NoSpace);
    assert_eq!(read_all(&o), model);
    // A device that deletes files and discards them gets its room back.
    o.trim(0, 64 << 10).unwrap();
    assert_eq!(o.used_bytes(), 16 << 10, "only whole chunks are given back");
    o.write_at(&vec![0x55; 32 << 10], 256 << 10).unwrap();
}

#[test]
fn overlay_without_spill_reports_no_space_at_the_ram_limit() {
    let o = Overlay::new(
        base(64 << 10),
        OverlayLimits {
            ram_bytes: 8192,
            ..Default::default()
        },
    )
    .unwrap();
    o.write_at(&[1; 8192], 0).unwrap();
    assert_eq!(
        o.write_at(&[1; 1], 9000).unwrap_err().kind(),
        ErrorKind::NoSpace
    );
}

#[test]
fn overlay_write_zeroes_is_free_for_whole_chunks_and_reported_as_zero() {
    let b = base(1 << 20);
    let limits = OverlayLimits {
        ram_bytes: 8192,
        quota_bytes: Some(8192),
        ..Default::default()
    };
    let o = Overlay::new(b.clone(), limits).unwrap();
    // Only the two partial edge chunks cost quota; the 23 whole chunks between are free.
    o.write_zeroes(1000, 100_000).unwrap();
    assert_eq!(o.used_bytes(), 8192);
    let mut model = read_all(b.as_ref());
    model[1000..101_000].fill(0);
    assert_eq!(read_all(&o), model);
    let map = o.allocation(4096, 20 * 4096).unwrap();
    assert_eq!(map.len(), 1);
    assert_eq!(map[0].state, ExtentState::Zero);
    assert_eq!(
        o.write_at(&[1; 1], 200_000).unwrap_err().kind(),
        ErrorKind::NoSpace
    );
}

#[test]
fn overlay_over_a_dynamic_image_reports_the_base_allocation() {
    let img = CreateOptions::dynamic(8 << 20)
        .create_on(Arc::new(MemStorage::new(Vec::new())), None)
        .unwrap();
    img.write_at(&[9; 4096], 3 << 20).unwrap();
    let o = Overlay::new(
        Arc::new(img),
        OverlayLimits {
            ram_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    o.write_at(&[1; 4096], 6 << 20).unwrap();
    o.write_zeroes(0, 1 << 20).unwrap();
    assert_eq!(o.used_bytes(), 4096);
    let map = o.allocation(0, 8 << 20).unwrap();
    let data: Vec<(u64, u64)> = map
        .iter()
        .filter(|e| e.state == ExtentState::Data)
        .map(|e| (e.offset, e.len))
        .collect();
    assert_eq!(data, vec![(2 << 20, 2 << 20), (6 << 20, 4096)]);
    let mut buf = [0u8; 4096];
    o.read_at(&mut buf, 3 << 20).unwrap();
    assert_eq!(buf, [9; 4096]);
    o.read_at(&mut buf, 6 << 20).unwrap();
    assert_eq!(buf, [1; 4096]);
    assert_eq!(
        o.read_at(&mut buf, (8 << 20) - 100).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
}

#[test]
fn overlay_saved_as_a_differencing_child_reads_like_the_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let base_path = dir.path().join("base.vhd");
    let base = CreateOptions::dynamic(4 << 20).create(&base_path).unwrap();
    base.write_at(&pattern(3, 3 << 20), 0).unwrap();
    drop(base);
    let disk = vhd::open_disk(&base_path, true).unwrap();
    let o = Overlay::new(
        disk,
        OverlayLimits {
            ram_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    o.write_at(&pattern(4, 10_000), 777).unwrap();
    o.write_zeroes(2 << 20, 64 << 10).unwrap();
    o.write_at(&[5; 4096], (4 << 20) - 4096).unwrap();
    let expected = read_all(&o);
    let child_path = dir.path().join("session.vhd");
    vhd::save_overlay(&o, &base_path, &child_path).unwrap();
    let child = vhd::OpenOptions::new(true).open(&child_path).unwrap();
    assert_eq!(child.chain().len(), 2);
    assert_eq!(read_all(&child), expected);
    assert!(vhd::check(&child).unwrap().is_consistent());
}

#[test]
fn overlays_sharing_a_ram_budget_spill_past_it_and_give_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(1 << 20);
    let limits = OverlayLimits {
        ram_bytes: 16 << 10,
        spill_dir: Some(dir.path().to_path_buf()),
        quota_bytes: None,
    };
    let budget = RamBudget::new(24 << 10);
    let open = || {
        Overlay::new(b.clone(), limits.clone())
            .unwrap()
            .sharing_ram(budget.clone())
    };
    let (first, second) = (open(), open());
    first.write_at(&pattern(1, 16 << 10), 0).unwrap();
    assert_eq!((first.ram_bytes(), budget.used()), (16 << 10, 16 << 10));
    // Its own limit would allow 16 KiB; the budget has 8 KiB left.
    let d = pattern(2, 16 << 10);
    second.write_at(&d, 8192).unwrap();
    assert_eq!((second.ram_bytes(), budget.used()), (8 << 10, 24 << 10));
    assert_eq!(second.used_bytes(), 16 << 10, "the rest spilled");
    let mut back = vec![0; 16 << 10];
    second.read_at(&mut back, 8192).unwrap();
    assert_eq!(back, d);
    // Trimmed chunks, a discarded overlay and a dropped one give their RAM back.
    second.trim(8192, 4096).unwrap();
    assert_eq!(budget.used(), 20 << 10);
    second.discard();
    assert_eq!(budget.used(), 16 << 10);
    drop(first);
    assert_eq!(budget.used(), 0);
    second.write_at(&d, 0).unwrap();
    assert_eq!(second.ram_bytes(), 16 << 10);
}
