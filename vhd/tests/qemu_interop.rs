//! Interop with qemu-img/qemu-io both ways: images qemu makes read byte-identical to
//! qemu's raw conversion, and images we write pass `qemu-img compare` against their raw
//! reference.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_same, pattern, qemu_to_raw, read_all};
use vhd::{CreateOptions, Disk, OpenOptions};

/// Scattered writes: (pattern byte, offset, length), across sector and block bounds.
const WRITES: &[(u8, u64, u64)] = &[
    (0xab, 12345, 7777),
    (0x5c, 0, 512),
    (0x17, 2 * 1024 * 1024 - 100, 300),
    (0xe1, 3 * 1024 * 1024 - 512, 512),
    (0x42, 1_500_001, 65_536),
];

fn qemu_io_writes(qemu_io: &Path, image: &Path) {
    for (p, off, len) in WRITES {
        testkit::run(
            Command::new(qemu_io)
                .args(["-f", "vpc", "-c", &format!("write -P {p:#x} {off} {len}")])
                .arg(image),
        );
    }
}

fn check_ours_equals_qemu(qemu_img: &Path, image: &Path, dir: &Path) {
    let reference = qemu_to_raw(qemu_img, image, dir);
    let img = OpenOptions::new(true).open(image).unwrap();
    assert_same(&read_all(&img), &reference, &image.display().to_string());
    let mapped = vhd::open_disk(image, true).unwrap();
    assert_eq!(mapped.size(), reference.len() as u64);
}

#[test]
fn images_made_by_qemu_img_create_read_like_their_raw_conversion() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let qemu_io = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let size = (3u64 << 20) + 512;
    for (name, opts) in [
        ("dyn.vhd", "subformat=dynamic"),
        ("dyn-force.vhd", "subformat=dynamic,force_size=on"),
        ("fixed.vhd", "subformat=fixed"),
        ("fixed-force.vhd", "subformat=fixed,force_size=on"),
    ] {
        let path = dir.path().join(name);
        testkit::run(
            Command::new(&qemu_img)
                .args(["create", "-q", "-f", "vpc", "-o", opts])
                .arg(&path)
                .arg(size.to_string()),
        );
        qemu_io_writes(&qemu_io, &path);
        check_ours_equals_qemu(&qemu_img, &path, dir.path());
        let img = OpenOptions::new(true).open(&path).unwrap();
        if opts.contains("force_size=on") {
            assert_eq!(img.size(), size, "{name}: exact size kept");
        } else {
            assert!(img.size() >= size, "{name}: qemu rounds up to CHS");
        }
    }
}

#[test]
fn images_made_by_qemu_img_convert_read_like_the_source() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let size = 5u64 << 20;
    let mut raw = vec![0u8; size as usize];
    for (i, (_, off, len)) in WRITES.iter().enumerate() {
        let (o, l) = (*off as usize, *len as usize);
        raw[o..o + l].copy_from_slice(&pattern(i as u64 + 1, l));
    }
    let src = dir.path().join("src.raw");
    std::fs::write(&src, &raw).unwrap();
    for (name, opts) in [
        ("c-dyn.vhd", "subformat=dynamic"),
        ("c-dyn-force.vhd", "subformat=dynamic,force_size=on"),
        ("c-fixed.vhd", "subformat=fixed"),
        ("c-fixed-force.vhd", "subformat=fixed,force_size=on"),
    ] {
        let path = dir.path().join(name);
        testkit::run(
            Command::new(&qemu_img)
                .args(["convert", "-f", "raw", "-O", "vpc", "-o", opts])
                .arg(&src)
                .arg(&path),
        );
        check_ours_equals_qemu(&qemu_img, &path, dir.path());
        let ours = read_all(&OpenOptions::new(true).open(&path).unwrap());
        assert_same(&ours[..size as usize], &raw, name);
        assert!(
            ours[size as usize..].iter().all(|&b| b == 0),
            "{name}: CHS padding reads zeros"
        );
    }
}

fn write_both(img: &dyn Disk, reference: &mut [u8]) {
    for (i, (_, off, len)) in WRITES.iter().enumerate() {
        let data = pattern(100 + i as u64, *len as usize);
        img.write_at(&data, *off).unwrap();
        reference[*off as usize..(*off + *len) as usize].copy_from_slice(&data);
    }
    img.flush().unwrap();
}

#[test]
fn images_we_write_pass_qemu_img_compare() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    for (name, opts) in [
        ("ours-fixed.vhd", CreateOptions::fixed((3 << 20) + 512)),
        ("ours-dyn.vhd", CreateOptions::dynamic((3 << 20) + 512)),
        (
            "ours-dyn-512k.vhd",
            CreateOptions::dynamic(7 << 20).block_size(512 << 10),
        ),
    ] {
        let path = dir.path().join(name);
        let img = opts.create(&path).unwrap();
        let mut reference = vec![0u8; opts.size as usize];
        write_both(&img, &mut reference);
        drop(img);
        let ref_path = dir.path().join(format!("{name}.ref"));
        std::fs::write(&ref_path, &reference).unwrap();
        testkit::run(
            Command::new(&qemu_img)
                .args(["compare", "-q", "-f", "vpc", "-F", "raw"])
                .arg(&path)
                .arg(&ref_path),
        );
        let info = testkit::run(
            Command::new(&qemu_img)
                .args(["info", "-f", "vpc", "--output=json"])
                .arg(&path),
        );
        assert!(
            info.contains(&format!("\"virtual-size\": {}", opts.size)),
            "{name}: {info}"
        );
        // And we read back what we wrote after reopening.
        let again = OpenOptions::new(true).open(&path).unwrap();
        assert_same(&read_all(&again), &reference, name);
    }
}

/// A sparse raw file: its holes are reported as zeros (so conversions skip them), and
/// converting it gives an image qemu-img finds equal to the source, holding only the
/// blocks with data.
#[test]
fn sparse_raw_files_convert_without_their_holes() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("sparse.raw");
    let file = std::fs::File::create(&raw).unwrap();
    file.set_len(256 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&[0x5a; 8192], 3 << 20).unwrap();
    file.write_all_at(&[0xa5; 4096], 200 << 20).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let src = vhd::open_disk(&raw, true).unwrap();
    let map = src.allocation(0, 256 << 20).unwrap();
    let data: u64 = map
        .iter()
        .filter(|e| e.state == vhd::ExtentState::Data)
        .map(|e| e.len)
        .sum();
    assert!(
        data < 4 << 20,
        "{data} bytes of a file with 12 KiB of data reported as data: {map:?}"
    );
    assert!(
        map.iter().any(|e| e.state == vhd::ExtentState::Data
            && e.offset <= 3 << 20
            && e.offset + e.len >= (3 << 20) + 8192),
        "the data at 3 MiB is not reported: {map:?}"
    );
    let out = dir.path().join("sparse.vhd");
    vhd::convert(src.as_ref(), &out, vhd::Target::dynamic(), &mut |_, _| {}).unwrap();
    let compare = testkit::run_output(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "vpc"])
            .arg(&raw)
            .arg(&out),
        testkit::DEFAULT_TIMEOUT,
    );
    assert!(
        compare.status.success(),
        "{}",
        String::from_utf8_lossy(&compare.stdout)
    );
    // Two blocks hold data; the other 126 are not in the file.
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(len < 6 << 20, "the converted image holds {len} bytes");
}
