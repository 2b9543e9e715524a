//! Merging a chain into a new base keeps every version's content, byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use provision_core::{
    DeviceType, Mac, Mode, SessionSettings, Sessions, Store, create_vdisk, merge_version,
    new_version,
};
use vhd::{Disk, OpenOptions, Target};

mod common;

const SIZE: u64 = 5 << 20;

/// Flattens the chain of `file` to a raw file with our converter.
fn flatten(file: &Path, out: &Path) -> PathBuf {
    let chain = OpenOptions::new(true).open(file).unwrap();
    vhd::convert(&chain, out, Target::Raw, &mut |_, _| {}).unwrap();
    out.to_path_buf()
}

#[test]
fn merged_versions_read_as_before() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    create_vdisk(&store, "os", SIZE, "").unwrap();
    let maint = Mac([2, 0, 0, 0, 0, 1]);
    store
        .add_device(maint, "maint", None, DeviceType::Maintenance)
        .unwrap();
    store.assign("maint", "os", Mode::Standard, None).unwrap();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();

    // Three versions, each writing its own pattern across block boundaries.
    for (n, offset) in [(1u8, 0u64), (2, (2 << 20) - 700), (3, 4 << 20)] {
        new_version(&store, "os", "").unwrap();
        // The device boots the new version (a boot resolves its version once).
        common::reboot(&sessions, maint);
        let session = common::open(&sessions, maint, "os").unwrap();
        session.write_at(&vec![n; 300_000], offset).unwrap();
        drop(session);
        store.promote("os").unwrap();
        store.promote("os").unwrap();
    }
    let store_dir = dir.path().join("store");
    let files: Vec<_> = store
        .versions("os")
        .unwrap()
        .into_iter()
        .map(|v| store_dir.join(v.file))
        .collect();
    let before: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, f)| flatten(f, &dir.path().join(format!("before{i}.raw"))))
        .collect();

    // A reader of version 2 keeps its view while the merge replaces the file.
    let reader = Arc::new(OpenOptions::new(true).open(&files[2]).unwrap());
    let mut progress = Vec::new();
    let copied = merge_version(&store, "os", 2, &mut |done, total| {
        progress.push((done, total))
    })
    .unwrap();
    assert!(copied >= 600_000, "copied only {copied} bytes");
    assert_eq!(progress.last(), Some(&(SIZE, SIZE)));
    let merged = OpenOptions::new(true).open(&files[2]).unwrap();
    assert!(merged.parent().is_none(), "version 2 still has a parent");
    let mut buf = vec![0u8; 4];
    reader.read_at(&mut buf, (2 << 20) - 700).unwrap();
    assert_eq!(buf, [2; 4]);

    for (i, file) in files.iter().enumerate() {
        let after = flatten(file, &dir.path().join(format!("after{i}.raw")));
        testkit::run(
            Command::new(&qemu_img)
                .args(["compare", "-f", "raw", "-F", "raw"])
                .arg(&before[i])
                .arg(&after),
        );
    }
    let again = merge_version(&store, "os", 2, &mut |_, _| {}).unwrap_err();
    assert_eq!(again.kind(), provision_core::ErrorKind::Conflict);
    // The chain goes on growing over the merged base.
    new_version(&store, "os", "after merge").unwrap();
    common::reboot(&sessions, maint);
    let session = common::open(&sessions, maint, "os").unwrap();
    session.read_at(&mut buf, 4 << 20).unwrap();
    assert_eq!(buf, [3; 4]);
}
