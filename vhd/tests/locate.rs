//! `Disk::locate`: the runs it names, read back from their files, are the bytes
//! `read_at` returns, for raw files, dynamic and fixed images, differencing chains and
//! write overlays over them; memory storage is never named.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use common::pattern;
use proptest::prelude::*;
use vhd::{CreateOptions, Disk, Located, MemStorage, OpenOptions, Overlay, OverlayLimits, RawDisk};

const SIZE: u64 = 6 << 20;

/// The bytes the runs stand for.
fn materialize(runs: &[Located]) -> Vec<u8> {
    let mut out = Vec::new();
    for run in runs {
        match run {
            Located::File { file, offset, len } => {
                let mut buf = vec![0u8; *len as usize];
                file.read_exact_at(&mut buf, *offset).unwrap();
                out.extend_from_slice(&buf);
            }
            Located::Zeros(n) => out.resize(out.len() + *n as usize, 0),
            Located::Bytes(b) => out.extend_from_slice(b),
        }
    }
    out
}

fn check(disk: &dyn Disk, offset: u64, len: u64) {
    let runs = disk
        .locate(offset, len)
        .unwrap()
        .expect("every byte of a file-backed disk is located");
    let mut want = vec![0u8; len as usize];
    disk.read_at(&mut want, offset).unwrap();
    assert_eq!(materialize(&runs), want, "locate({offset}, {len})");
    // Runs are merged: no two neighbours of the same kind that could be one.
    for pair in runs.windows(2) {
        let mergeable = match (&pair[0], &pair[1]) {
            (Located::Zeros(_), Located::Zeros(_)) => true,
            (
                Located::File {
                    file: a,
                    offset: o,
                    len: l,
                },
                Located::File {
                    file: b, offset: p, ..
                },
            ) => Arc::ptr_eq(a, b) && o + l == *p,
            _ => false,
        };
        assert!(!mergeable, "unmerged runs {pair:?}");
    }
}

/// A dynamic base with three written blocks and a hole, and a child over it with
/// writes that split sectors and cross blocks.
fn chain(dir: &Path) -> vhd::Image {
    let base = CreateOptions::dynamic(SIZE)
        .create(&dir.join("base.vhd"))
        .unwrap();
    base.write_at(&pattern(1, 4 << 20), 0).unwrap();
    base.write_at(&pattern(2, 4096), (5 << 20) + 8192).unwrap();
    base.flush().unwrap();
    drop(base);
    let child = vhd::create_differencing(&dir.join("child.vhd"), &dir.join("base.vhd")).unwrap();
    for (off, len, seed) in [
        (100u64, 10usize, 3u64),
        (4096 + 300, 1500, 4),
        ((2 << 20) - 700, 1400, 5),
    ] {
        child.write_at(&pattern(seed, len), off).unwrap();
    }
    child.flush().unwrap();
    drop(child);
    OpenOptions::new(true).open(&dir.join("child.vhd")).unwrap()
}

/// An overlay that keeps 256 KiB in RAM and spills the rest to a file in `dir`.
fn overlay(base: Arc<dyn Disk>, dir: &Path) -> Overlay {
    let limits = OverlayLimits {
        ram_bytes: 256 << 10,
        spill_dir: Some(dir.to_path_buf()),
        quota_bytes: None,
    };
    Overlay::new(base, limits).unwrap()
}

#[test]
fn raw_fixed_dynamic_and_chains_locate_what_they_read() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, pattern(9, 1 << 20)).unwrap();
    let raw = vhd::open_disk(&raw, true).unwrap();
    check(raw.as_ref(), 0, 1 << 20);
    check(raw.as_ref(), 777, 4000);

    let fixed = CreateOptions::fixed(1 << 20)
        .create(&dir.path().join("fixed.vhd"))
        .unwrap();
    fixed.write_at(&pattern(8, 5000), 1000).unwrap();
    check(&fixed, 0, 1 << 20);

    let child = chain(dir.path());
    check(&child, 0, SIZE);
    // Memory-mapped images name their files too.
    let mapped = OpenOptions {
        mmap: true,
        ..OpenOptions::new(true)
    }
    .open(&dir.path().join("child.vhd"))
    .unwrap();
    check(&mapped, 0, SIZE);
    check(&child, 50, 300);
    check(&child, (2 << 20) - 1000, 4000);
    check(&child, 4 << 20, 2 << 20);
}

#[test]
fn overlays_copy_out_their_chunks_and_locate_the_rest_in_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let base: Arc<dyn Disk> = Arc::new(chain(dir.path()));
    let overlay = overlay(base, dir.path());
    overlay.write_at(&pattern(6, 700_000), 1 << 20).unwrap();
    overlay.write_zeroes(3 << 20, 1 << 20).unwrap();
    check(&overlay, 0, SIZE);
    check(&overlay, (1 << 20) + 10, 200_000);
}

#[test]
fn memory_storage_is_not_located() {
    let mem = RawDisk::new(Arc::new(MemStorage::read_only(vec![1; 4096]))).unwrap();
    assert!(mem.locate(0, 4096).unwrap().is_none());
    let overlay = Overlay::new(Arc::new(mem), OverlayLimits::default()).unwrap();
    assert!(overlay.locate(0, 4096).unwrap().is_none());
    assert!(overlay.locate(4000, 200).is_err(), "out of range");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_range_of_a_chain_under_an_overlay(
        writes in prop::collection::vec((0..SIZE - 70_000, 1usize..70_000), 0..6),
        offset in 0..SIZE,
        len in 1u64..(3 << 20),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let base: Arc<dyn Disk> = Arc::new(chain(dir.path()));
        let overlay = overlay(base, dir.path());
        for (i, (off, n)) in writes.into_iter().enumerate() {
            overlay.write_at(&pattern(i as u64 + 20, n), off).unwrap();
        }
        let len = len.min(SIZE - offset);
        check(&overlay, offset, len);
    }
}
