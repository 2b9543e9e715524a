//! The real-world images in ../shared/fixtures/vhd behave as its README says.

mod common;

use std::sync::Arc;

use common::{assert_same, fixture, read_all};
use vhd::{
    ChecksumPolicy, CreateOptions, Disk, DiskType, ErrorKind, FooterSource, OpenOptions,
    PlatformCode,
};

#[test]
fn image_vhd_bad_checksum_is_a_warning_by_default_and_refused_when_strict() {
    let Some(path) = fixture("image.vhd") else {
        return;
    };
    let img = OpenOptions::new(true).open(&path).unwrap();
    assert_eq!(img.disk_type(), DiskType::Dynamic);
    assert_eq!(img.size(), 104_448);
    assert!(
        img.warnings().iter().any(|w| w.contains("checksum")),
        "{:?}",
        img.warnings()
    );
    let strict = OpenOptions {
        checksums: ChecksumPolicy::Strict,
        ..OpenOptions::new(true)
    };
    let err = strict.open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn image_vhd_reads_like_qemu_once_its_checksums_are_repaired() {
    let Some(path) = fixture("image.vhd") else {
        return;
    };
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    // Repair both footer copies so qemu accepts the image, then compare.
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for at in [0, len - 512] {
        let mut f = vhd::Footer::parse(&bytes[at..at + 512], at as u64).unwrap();
        f.checksum = 0;
        bytes[at..at + 512].copy_from_slice(&f.to_bytes());
    }
    let fixed = dir.path().join("image-fixed.vhd");
    std::fs::write(&fixed, &bytes).unwrap();
    let reference = common::qemu_to_raw(&qemu_img, &fixed, dir.path());
    let ours = read_all(&OpenOptions::new(true).open(&path).unwrap());
    assert_same(&ours, &reference, "image.vhd");
    assert!(ours.iter().any(|&b| b != 0), "the fixture holds data");
}

#[test]
fn image_differential_finds_its_parent_by_name_and_reads_like_it() {
    let Some(path) = fixture("image-differential.vhd") else {
        return;
    };
    let child = OpenOptions::new(true).open(&path).unwrap();
    assert_eq!(child.disk_type(), DiskType::Differencing);
    let header = child.header().unwrap();
    assert_eq!(
        header.parent_time_stamp, 0,
        "time stamp 0 = not recorded, accepted"
    );
    assert!(header.locators.iter().all(|l| l.is_empty()));
    let parent = child.parent().expect("parent found by unicode name");
    assert_eq!(parent.path().unwrap().file_name().unwrap(), "image.vhd");
    assert_eq!(child.chain().len(), 2);
    let parent_only = OpenOptions::new(true)
        .open(&fixture("image.vhd").unwrap())
        .unwrap();
    assert_same(
        &read_all(&child),
        &read_all(&parent_only),
        "image-differential.vhd vs image.vhd",
    );
}

#[test]
fn fat_differential_parses_locators_and_fails_clearly_without_its_parent() {
    let Some(path) = fixture("fat-differential.vhd") else {
        return;
    };
    let err = OpenOptions::new(true).open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ParentNotFound);
    let msg = err.to_string();
    assert!(msg.contains("fat-parent.vhd"), "{msg}");
    let vhd::Error::ParentNotFound { tried, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        tried.len() >= 2,
        "W2ru, W2ku and the name are tried: {tried:?}"
    );

    let storage = vhd::FileStorage::open(&path, true).unwrap();
    let layout_header = {
        let mut b = vec![0; 1024];
        vhd::Storage::read_at(&storage, &mut b, 512).unwrap();
        vhd::DynamicHeader::parse(&b, 512).unwrap()
    };
    let locs = vhd::decode_locators(&storage, &layout_header);
    let codes: Vec<_> = locs.iter().map(|(c, _)| *c).collect();
    assert!(
        codes.contains(&PlatformCode::W2ku) && codes.contains(&PlatformCode::W2ru),
        "{locs:?}"
    );
    assert!(
        locs.iter().all(|(_, p)| p.ends_with("fat-parent.vhd")),
        "{locs:?}"
    );
}

#[test]
fn fat_differential_reads_through_a_resolver_supplied_parent() {
    let Some(path) = fixture("fat-differential.vhd") else {
        return;
    };
    // Learn the parent id, then make a stand-in parent full of 0x11 with that id.
    let storage = vhd::FileStorage::open(&path, true).unwrap();
    let mut b = vec![0; 1024];
    vhd::Storage::read_at(&storage, &mut b, 512).unwrap();
    let header = vhd::DynamicHeader::parse(&b, 512).unwrap();
    let mem = Arc::new(vhd::MemStorage::new(Vec::new()));
    let opts = CreateOptions {
        unique_id: Some(header.parent_unique_id),
        ..CreateOptions::dynamic(4 << 20)
    };
    let parent = opts.create_on(mem, None).unwrap();
    parent.write_at(&vec![0x11; 4 << 20], 0).unwrap();
    let parent = Arc::new(parent);
    let supplied = parent.clone();
    let resolver = move |_: &vhd::ParentRequest<'_>| Ok(Some(supplied.clone()));
    let child = OpenOptions {
        resolver: Some(Arc::new(resolver)),
        ..OpenOptions::new(true)
    }
    .open(&path)
    .unwrap();
    assert_eq!(child.size(), 4 << 20, "win creator: current size, not CHS");
    assert_eq!(child.footer().chs_size(), 4_177_920);
    let bm = child.block_bitmap(0).unwrap().unwrap();
    let set: Vec<usize> = (0..4096)
        .filter(|&i| bm[i / 8] & (0x80 >> (i % 8)) != 0)
        .collect();
    assert_eq!(set.len(), 18, "partial bitmap: {set:?}");
    let all = read_all(&child);
    let child_storage_len = std::fs::metadata(&path).unwrap().len();
    assert!(child_storage_len > 0);
    for s in 0..(4 << 20) / 512 {
        let sector = &all[s * 512..s * 512 + 512];
        if set.contains(&s) {
            let mut raw = vec![0; 512];
            let entry = child.bat().unwrap()[0];
            vhd::Storage::read_at(
                &storage,
                &mut raw,
                u64::from(entry) * 512 + 512 + s as u64 * 512,
            )
            .unwrap();
            assert_eq!(sector, &raw[..], "sector {s} comes from the child");
        } else {
            assert!(
                sector.iter().all(|&x| x == 0x11),
                "sector {s} comes from the parent"
            );
        }
    }
    // A parent with another id is refused.
    let wrong = Arc::new(
        CreateOptions::dynamic(4 << 20)
            .create_on(Arc::new(vhd::MemStorage::new(Vec::new())), None)
            .unwrap(),
    );
    let resolver = move |_: &vhd::ParentRequest<'_>| Ok(Some(wrong.clone()));
    let err = OpenOptions {
        resolver: Some(Arc::new(resolver)),
        ..OpenOptions::new(true)
    }
    .open(&path)
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ParentMismatch);
}

#[test]
fn ext2_reads_like_its_qemu_conversion() {
    let Some(path) = fixture("ext2.vhd") else {
        return;
    };
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let reference = common::qemu_to_raw(&qemu_img, &path, dir.path());
    let img = OpenOptions::new(true).open(&path).unwrap();
    assert_eq!(img.footer_source(), FooterSource::Trailing);
    assert_same(&read_all(&img), &reference, "ext2.vhd");
    // The ext2 superblock magic at 1024 + 56.
    assert_eq!(&reference[1080..1082], &[0x53, 0xef]);
    // Allocation: one of three blocks allocated.
    let map = img.allocation(0, img.size()).unwrap();
    let data: u64 = map
        .iter()
        .filter(|e| e.state == vhd::ExtentState::Data)
        .map(|e| e.len)
        .sum();
    assert_eq!(data, 2 << 20);
}
