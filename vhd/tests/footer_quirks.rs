//! Footer quirks of real writers: the virtual size taken from the current size or from
//! the CHS geometry (`SizePolicy`, SPECS §2.4), and the 511-byte footer of old Virtual PC
//! images (`FooterSource::Trailing511`, SPECS §2.1).

mod common;

use std::path::Path;

use common::{assert_same, pattern, read_all};
use vhd::{
    CreateOptions, Disk, DiskType, ErrorKind, Footer, FooterSource, Geometry, Image, OpenOptions,
    SizePolicy,
};

/// 3 MiB + 512 B = 6145 sectors: not a product of the spec's CHS algorithm.
const ODD: u64 = (3 << 20) + 512;
/// What the spec's algorithm gives for 6145 sectors, worked by hand (SPECS §2.1):
/// spt 17, cth = 6145 / 17 = 361, heads = max(4, ceil(361 / 1024)) = 4,
/// cylinders = 361 / 4 = 90, so 90 * 4 * 17 = 6120 sectors.
const ODD_GEOMETRY: Geometry = Geometry {
    cylinders: 90,
    heads: 4,
    sectors_per_track: 17,
};
const ODD_CHS: u64 = 6120 * 512;

fn open(path: &Path, size_policy: SizePolicy) -> vhd::Result<Image> {
    OpenOptions {
        size_policy,
        ..OpenOptions::new(true)
    }
    .open(path)
}

/// Rewrites the trailing footer (and the copy at offset 0 of a sparse image) with `edit`
/// applied and a fresh checksum, as another writer would have made it.
fn edit_footers(path: &Path, edit: impl Fn(&mut Footer)) {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    let mut ats = vec![len - 512];
    if bytes.starts_with(b"conectix") {
        ats.push(0);
    }
    for at in ats {
        let mut footer = Footer::parse(&bytes[at..at + 512], at as u64).unwrap();
        edit(&mut footer);
        bytes[at..at + 512].copy_from_slice(&footer.to_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// A fixed image of `ODD` bytes filled with a pattern; returns the pattern.
fn odd_fixed(path: &Path) -> Vec<u8> {
    let data = pattern(7, ODD as usize);
    let img = CreateOptions::fixed(ODD).create(path).unwrap();
    img.write_at(&data, 0).unwrap();
    img.flush().unwrap();
    data
}

/// A dynamic image of `ODD` bytes with 512 KiB blocks, written sparsely; returns the
/// expected contents.
fn odd_dynamic(path: &Path) -> Vec<u8> {
    let mut model = vec![0; ODD as usize];
    let img = CreateOptions::dynamic(ODD)
        .block_size(512 << 10)
        .create(path)
        .unwrap();
    for (off, len, seed) in [
        (0u64, 4096usize, 1u64),
        (1 << 20, 70_000, 2),
        (ODD - 1536, 1536, 3),
    ] {
        let data = pattern(seed, len);
        img.write_at(&data, off).unwrap();
        model[off as usize..off as usize + len].copy_from_slice(&data);
    }
    img.flush().unwrap();
    model
}

#[test]
fn geometry_of_an_odd_size_follows_the_spec_algorithm() {
    assert_eq!(Geometry::for_size(ODD), ODD_GEOMETRY);
    assert_eq!(ODD_GEOMETRY.size(), ODD_CHS);
    // Sizes the SPECS quote: qemu rounds 100M up to a CHS product of 104,865,792 B, and
    // anything past 65535*16*255 sectors stores the maximal geometry.
    assert_eq!(Geometry::for_size(104_865_792).size(), 104_865_792);
    assert!(Geometry::for_size(200 << 30).is_max());
}

#[test]
fn size_policies_on_a_fixed_image_whose_current_size_is_not_a_chs_product() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.vhd");
    let data = odd_fixed(&path);

    let current = open(&path, SizePolicy::CurrentSize).unwrap();
    assert_eq!(current.footer().current_size, ODD);
    assert_eq!(current.footer().geometry, ODD_GEOMETRY);
    assert_eq!(current.footer().chs_size(), ODD_CHS);
    assert_eq!(
        current.size(),
        ODD,
        "current size policy: the footer's size"
    );
    assert_same(&read_all(&current), &data, "current-size view");
    // The default is the current size.
    assert_eq!(OpenOptions::new(true).open(&path).unwrap().size(), ODD);

    let chs = open(&path, SizePolicy::Chs).unwrap();
    assert_eq!(chs.size(), ODD_CHS, "CHS policy: cylinders*heads*spt*512");
    assert_same(&read_all(&chs), &data[..ODD_CHS as usize], "CHS view");
    // The 25 sectors past the CHS size do not exist in the CHS view.
    let err = chs.read_at(&mut [0; 512], ODD_CHS).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfRange, "{err}");
    assert!(current.read_at(&mut [0; 512], ODD_CHS).is_ok());
}

#[test]
fn size_policies_on_a_dynamic_image_whose_current_size_is_not_a_chs_product() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd-dynamic.vhd");
    let model = odd_dynamic(&path);
    let current = open(&path, SizePolicy::CurrentSize).unwrap();
    assert_eq!(current.disk_type(), DiskType::Dynamic);
    assert_eq!(current.size(), ODD);
    assert_same(&read_all(&current), &model, "current-size view");
    let chs = open(&path, SizePolicy::Chs).unwrap();
    assert_eq!(chs.size(), ODD_CHS);
    assert_same(&read_all(&chs), &model[..ODD_CHS as usize], "CHS view");
}

#[test]
fn size_policies_when_another_writer_stored_a_smaller_geometry() {
    // What Windows writes (fat-differential.vhd: 4 MiB current, 4,177,920 B CHS), made
    // here on an 8 MiB image with a geometry well below its current size.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small-geometry.vhd");
    let img = CreateOptions::fixed(8 << 20).create(&path).unwrap();
    let data = pattern(9, 8 << 20);
    img.write_at(&data, 0).unwrap();
    drop(img);
    let geometry = Geometry {
        cylinders: 100,
        heads: 4,
        sectors_per_track: 17,
    };
    edit_footers(&path, |f| {
        f.creator_app = *b"win ";
        f.geometry = geometry;
    });
    assert_eq!(
        open(&path, SizePolicy::CurrentSize).unwrap().size(),
        8 << 20
    );
    let chs = open(&path, SizePolicy::Chs).unwrap();
    assert_eq!(chs.size(), 100 * 4 * 17 * 512);
    assert_same(&read_all(&chs), &data[..100 * 4 * 17 * 512], "CHS view");
}

#[test]
fn chs_policy_keeps_the_current_size_for_the_maximal_geometry() {
    // qemu's force_size=on (creator `qem2`) and disks over ~127 GiB store 65535/16/255,
    // which every reader takes as "use the current size".
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("max-geometry.vhd");
    let model = odd_dynamic(&path);
    edit_footers(&path, |f| {
        f.creator_app = *b"qem2";
        f.geometry = Geometry {
            cylinders: 65535,
            heads: 16,
            sectors_per_track: 255,
        };
    });
    for policy in [SizePolicy::CurrentSize, SizePolicy::Chs] {
        let img = open(&path, policy).unwrap();
        assert!(img.footer().geometry.is_max());
        assert_eq!(img.size(), ODD, "{policy:?}");
        assert_same(&read_all(&img), &model, "maximal geometry");
    }
}

#[test]
fn chs_policy_refuses_a_geometry_larger_than_the_block_table() {
    // A dynamic image whose geometry addresses more than its BAT covers: qemu refuses it
    // ("Page table too small"); so do we, with a typed error, under the CHS policy only.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big-geometry.vhd");
    let model = odd_dynamic(&path);
    edit_footers(&path, |f| f.geometry = Geometry::for_size(64 << 20));
    let current = open(&path, SizePolicy::CurrentSize).unwrap();
    assert_same(&read_all(&current), &model, "current-size view");
    let err = open(&path, SizePolicy::Chs).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("max table entries"), "{err}");
}

#[test]
fn qemu_agrees_with_our_size_policy_for_each_creator() {
    // qemu 7.2 sizes `vpc ` images by CHS and `win ` images by current size (SPECS §2.4).
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    for (creator, policy) in [
        (*b"vpc ", SizePolicy::Chs),
        (*b"win ", SizePolicy::CurrentSize),
    ] {
        for dynamic in [false, true] {
            let path = dir.path().join(format!(
                "{}-{}.vhd",
                String::from_utf8_lossy(&creator).trim(),
                if dynamic { "dynamic" } else { "fixed" }
            ));
            if dynamic {
                odd_dynamic(&path);
            } else {
                odd_fixed(&path);
            }
            edit_footers(&path, |f| f.creator_app = creator);
            let ours = read_all(&open(&path, policy).unwrap());
            let theirs = common::qemu_to_raw(&qemu_img, &path, dir.path());
            assert_same(
                &ours,
                &theirs,
                &format!("{} with {policy:?}", path.display()),
            );
        }
    }
}

/// Drops the last byte of the file, as Virtual PC before 2004 wrote its footer.
fn truncate_last_byte(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len - 1).unwrap();
}

#[test]
fn a_fixed_image_with_a_511_byte_footer_opens_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old-vpc.vhd");
    let data = odd_fixed(&path);
    let original = OpenOptions::new(true).open(&path).unwrap().footer().clone();
    truncate_last_byte(&path);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), ODD + 511);

    let storage = vhd::FileStorage::open(&path, true).unwrap();
    assert!(vhd::looks_like_vhd(&storage).unwrap());
    let img = OpenOptions::new(true).open(&path).unwrap();
    assert_eq!(img.footer_source(), FooterSource::Trailing511);
    assert_eq!(img.footer(), &original, "the footer reads as written");
    assert_eq!(img.disk_type(), DiskType::Fixed);
    assert_eq!(img.size(), ODD);
    assert_same(&read_all(&img), &data, "511-byte footer image");
    // Through the generic opener too (what nbd-serve and provision-core use).
    let disk = vhd::open_disk(&path, true).unwrap();
    assert_eq!(disk.size(), ODD);
    let mut tail = vec![0; 4096];
    disk.read_at(&mut tail, ODD - 4096).unwrap();
    assert_eq!(&tail[..], &data[ODD as usize - 4096..]);

    // Writes go to the data area and leave the old footer as it is.
    let img = OpenOptions::new(false).open(&path).unwrap();
    img.write_at(&[0xAB; 1000], ODD - 1000).unwrap();
    img.flush().unwrap();
    drop(img);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), ODD + 511);
    let img = OpenOptions::new(true).open(&path).unwrap();
    assert_eq!(img.footer_source(), FooterSource::Trailing511);
    let mut expect = data;
    expect[ODD as usize - 1000..].fill(0xAB);
    assert_same(&read_all(&img), &expect, "after a write");
}

#[test]
fn a_dynamic_image_with_a_511_byte_footer_opens_reads_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old-vpc-dynamic.vhd");
    let mut model = odd_dynamic(&path);
    truncate_last_byte(&path);
    let img = OpenOptions::new(true).open(&path).unwrap();
    // The trailing footer is the 511-byte one, whose checksum holds (the missing byte is
    // a reserved zero); the copy at offset 0 is not needed.
    assert_eq!(img.footer_source(), FooterSource::Trailing511);
    assert!(img.warnings().is_empty(), "{:?}", img.warnings());
    assert_eq!(img.size(), ODD);
    assert_same(&read_all(&img), &model, "511-byte footer dynamic image");
    drop(img);

    // Allocating a block replaces the short footer by a full one at the new end.
    let img = OpenOptions::new(false).open(&path).unwrap();
    let data = pattern(11, 8192);
    img.write_at(&data, 2 << 20).unwrap();
    img.flush().unwrap();
    drop(img);
    model[2 << 20..(2 << 20) + 8192].copy_from_slice(&data);
    let img = OpenOptions::new(true).open(&path).unwrap();
    assert_eq!(img.footer_source(), FooterSource::Trailing);
    assert_same(&read_all(&img), &model, "after allocating a block");
    let report = vhd::check(&img).unwrap();
    assert!(report.is_consistent(), "{:?}", report.problems);
}

#[test]
fn qemu_reads_the_511_byte_variant_to_the_same_bytes() {
    // qemu 7.2 looks for the footer at its sector-rounded length - 512, which for a file
    // one byte short of a sector lands on the 511-byte footer (reading past EOF as zeros):
    // an independent reader of old Virtual PC images to compare with.
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    for dynamic in [false, true] {
        let path = dir.path().join(if dynamic {
            "old-dynamic.vhd"
        } else {
            "old-fixed.vhd"
        });
        let model = if dynamic {
            odd_dynamic(&path)
        } else {
            odd_fixed(&path)
        };
        // `win `: qemu takes the current size, so both readers agree on ODD bytes.
        edit_footers(&path, |f| f.creator_app = *b"win ");
        truncate_last_byte(&path);
        let img = OpenOptions::new(true).open(&path).unwrap();
        assert_eq!(img.footer_source(), FooterSource::Trailing511);
        let ours = read_all(&img);
        assert_same(&ours, &model, "ours, 511-byte footer");
        let theirs = common::qemu_to_raw(&qemu_img, &path, dir.path());
        assert_same(&ours, &theirs, "qemu, 511-byte footer");
    }
}
