//! Kernels and initrds read out of real disk images (built by sfdisk, mkfs.fat, mtools
//! and mkfs.ext4), through a VHD chain, and copied into the store per version.

use std::path::Path;
use std::sync::Arc;

use provision_core::boot_files::{extract_boot_files, find_in_image};
use testkit::kernel_disks::{ext4_gpt_disk, fat_mbr_disk};
use vhd::Disk;

fn open(path: &Path) -> Arc<dyn Disk> {
    vhd::open_disk(path, true).expect("open the image")
}

#[test]
fn a_syslinux_style_fat_partition_of_an_mbr_disk() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = fat_mbr_disk(
        &dir.path().join("fat.raw"),
        &[
            ("vmlinuz", b"KERNEL-FAT"),
            ("initrd.img", b"INITRD-FAT"),
            ("syslinux.cfg", b"default linux"),
        ],
    ) else {
        return;
    };
    let found = find_in_image(&open(&disk)).unwrap().expect("a kernel");
    assert_eq!(found.partition, 1);
    assert_eq!(
        (found.kernel_path.as_str(), found.kernel.as_slice()),
        ("/vmlinuz", &b"KERNEL-FAT"[..])
    );
    assert_eq!(
        (found.initrd_path.as_str(), found.initrd.as_slice()),
        ("/initrd.img", &b"INITRD-FAT"[..])
    );
}

#[test]
fn a_fat_boot_folder_with_versioned_names() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = fat_mbr_disk(
        &dir.path().join("fat.raw"),
        &[
            ("boot/vmlinuz-6.1.0-9-amd64", b"OLD"),
            ("boot/initrd.img-6.1.0-9-amd64", b"OLD-INITRD"),
            ("boot/vmlinuz-6.1.0-10-amd64", b"NEW"),
            ("boot/initrd.img-6.1.0-10-amd64", b"NEW-INITRD"),
        ],
    ) else {
        return;
    };
    let found = find_in_image(&open(&disk)).unwrap().expect("a kernel");
    assert_eq!(found.kernel_path, "/boot/vmlinuz-6.1.0-10-amd64");
    assert_eq!(
        (found.kernel.as_slice(), found.initrd.as_slice()),
        (&b"NEW"[..], &b"NEW-INITRD"[..])
    );
}

#[test]
fn debians_symlinks_on_ext4_in_the_second_gpt_partition() {
    let dir = tempfile::tempdir().unwrap();
    let big_initrd: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let Some(disk) = ext4_gpt_disk(
        &dir.path().join("ext4.raw"),
        &[
            ("boot/vmlinuz-6.1.0-10-amd64", Ok(b"KERNEL-10")),
            ("boot/initrd.img-6.1.0-10-amd64", Ok(&big_initrd)),
            ("boot/vmlinuz-6.1.0-11-amd64", Ok(b"KERNEL-11-no-initrd")),
            ("vmlinuz", Err("boot/vmlinuz-6.1.0-10-amd64")),
            ("initrd.img", Err("boot/initrd.img-6.1.0-10-amd64")),
            ("etc/hostname", Ok(b"lab")),
        ],
    ) else {
        return;
    };
    let found = find_in_image(&open(&disk)).unwrap().expect("a kernel");
    assert_eq!(found.partition, 2, "partition 1 holds no file system");
    assert_eq!(found.kernel_path, "/boot/vmlinuz-6.1.0-10-amd64");
    assert_eq!(found.initrd_path, "/boot/initrd.img-6.1.0-10-amd64");
    assert_eq!(found.kernel, b"KERNEL-10");
    assert!(found.initrd == big_initrd, "the initrd's bytes");
}

#[test]
fn an_ext4_root_without_symlinks_boots_the_newest_complete_pair() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = ext4_gpt_disk(
        &dir.path().join("ext4.raw"),
        &[
            ("boot/vmlinuz-6.1.0-9-amd64", Ok(b"K9")),
            ("boot/initrd.img-6.1.0-9-amd64", Ok(b"I9")),
            ("boot/vmlinuz-6.1.0-10-amd64", Ok(b"K10")),
            ("boot/initrd.img-6.1.0-10-amd64", Ok(b"I10")),
            ("boot/vmlinuz-6.1.0-11-amd64", Ok(b"K11 without its initrd")),
        ],
    ) else {
        return;
    };
    let found = find_in_image(&open(&disk)).unwrap().expect("a kernel");
    assert_eq!(
        (found.kernel.as_slice(), found.initrd.as_slice()),
        (&b"K10"[..], &b"I10"[..])
    );
}

#[test]
fn a_disk_without_kernels_and_a_truncated_one() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = ext4_gpt_disk(&dir.path().join("ext4.raw"), &[("etc/hostname", Ok(b"x"))])
    else {
        return;
    };
    assert_eq!(find_in_image(&open(&disk)).unwrap(), None);
    // The file system's tail cut off: an error or nothing, never a panic.
    let cut = dir.path().join("cut.raw");
    let bytes = std::fs::read(&disk).unwrap();
    std::fs::write(&cut, &bytes[..9 << 20]).unwrap();
    let e = find_in_image(&open(&cut)).unwrap_err().to_string();
    assert!(e.contains("past the disk"), "{e}");
}

/// Two versions of one vDisk (v1 a differencing VHD over v0) carrying different
/// kernels: each version's copy in the store is its own, and it is made again when the
/// version's file changes (a maintenance device writing it).
#[test]
fn each_version_of_a_chain_has_its_own_copy() {
    let dir = tempfile::tempdir().unwrap();
    let Some(old) = fat_mbr_disk(
        &dir.path().join("old.raw"),
        &[("vmlinuz", b"KERNEL-V0"), ("initrd.img", b"INITRD-V0")],
    ) else {
        return;
    };
    let Some(new) = fat_mbr_disk(
        &dir.path().join("new.raw"),
        &[
            ("vmlinuz", b"KERNEL-V1"),
            ("initrd.img", b"INITRD-V1-longer"),
        ],
    ) else {
        return;
    };
    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join("lab")).unwrap();
    let v0 = store.join("lab/v0.vhd");
    let v1 = store.join("lab/v1.vhd");
    vhd::convert_file(
        &old,
        &v0,
        vhd::Target::Dynamic {
            block_size: 2 << 20,
        },
        &mut |_, _| {},
    )
    .unwrap();
    vhd::create_differencing(&v1, &v0).unwrap();
    let overwrite = |path: &Path, raw: &Path| {
        let disk = vhd::open_disk(path, false).unwrap();
        let bytes = std::fs::read(raw).unwrap();
        disk.write_at(&bytes, 0).unwrap();
        disk.flush().unwrap();
    };
    overwrite(&v1, &new);

    let copy0 = extract_boot_files(&store, "lab", 0, "lab/v0.vhd")
        .unwrap()
        .expect("v0's");
    let copy1 = extract_boot_files(&store, "lab", 1, "lab/v1.vhd")
        .unwrap()
        .expect("v1's");
    assert_eq!(std::fs::read(&copy0.kernel).unwrap(), b"KERNEL-V0");
    assert_eq!(std::fs::read(&copy0.initrd).unwrap(), b"INITRD-V0");
    assert_eq!(std::fs::read(&copy1.kernel).unwrap(), b"KERNEL-V1");
    assert_eq!(std::fs::read(&copy1.initrd).unwrap(), b"INITRD-V1-longer");
    assert_eq!(copy1.kernel, store.join("lab/v1.boot/vmlinuz"));
    assert_eq!(copy1.kernel_source, "p1:/vmlinuz");

    // v1 written again (as a maintenance device would): the copy follows.
    std::thread::sleep(std::time::Duration::from_millis(20));
    overwrite(&v1, &old);
    let copy1 = extract_boot_files(&store, "lab", 1, "lab/v1.vhd")
        .unwrap()
        .expect("v1's");
    assert_eq!(std::fs::read(&copy1.kernel).unwrap(), b"KERNEL-V0");
}
