//! Helpers shared by the integration tests: peers, patterns, whole-disk reads.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vhd::Disk;

/// Reads a whole disk.
pub fn read_all(disk: &dyn Disk) -> Vec<u8> {
    let mut buf = vec![0; disk.size() as usize];
    disk.read_at(&mut buf, 0).expect("reading the whole disk");
    buf
}

/// qemu-img convert to raw, returning the raw bytes.
pub fn qemu_to_raw(qemu_img: &Path, image: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!(
        "{}.raw",
        image.file_name().unwrap().to_string_lossy()
    ));
    testkit::run(
        Command::new(qemu_img)
            .args(["convert", "-f", "vpc", "-O", "raw"])
            .arg(image)
            .arg(&out),
    );
    std::fs::read(&out).unwrap()
}

/// A deterministic byte pattern (xorshift) of `len` bytes from `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Path of a shared VHD fixture, or `None` (skip) outside CI when they are absent.
pub fn fixture(name: &str) -> Option<PathBuf> {
    testkit::fixtures().map(|d| d.join("vhd").join(name))
}

/// Asserts two byte strings are equal, naming the first differing offset.
pub fn assert_same(ours: &[u8], theirs: &[u8], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: sizes differ");
    if let Some(i) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i}: ours {:#04x}, reference {:#04x}",
            ours[i], theirs[i]
        );
    }
}

/// A link to `base` as the parent of an image in memory (no file paths).
pub fn memory_link(base: &vhd::Image) -> vhd::ParentLink {
    vhd::ParentLink {
        unique_id: base.footer().unique_id,
        time_stamp: 0,
        unicode_name: "base.vhd".into(),
        absolute: None,
        relative: None,
        size: base.size(),
    }
}
