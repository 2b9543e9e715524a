//! Raw disk images that carry a kernel and an initrd, built with the real tools and
//! without mounts or root (`sfdisk`, `mformat`/`mcopy` of mtools, `mkfs.ext4 -d`), for
//! tests of reading boot files out of a vDisk version's image.
//!
//! Each builder returns `None` when a tool is missing outside CI (under `CI=true` it
//! fails, as [`crate::peer`] does).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{peer, run};

const MIB: u64 = 1 << 20;

/// Writes a disk of `mib` MiB at `disk` with the partition table `script` (sfdisk).
fn partitioned(disk: &Path, mib: u64, script: &str) -> Option<()> {
    let sfdisk = peer("sfdisk")?;
    let file = std::fs::File::create(disk).expect("create the disk file");
    file.set_len(mib * MIB).expect("size the disk file");
    drop(file);
    let mut child = Command::new(sfdisk)
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sfdisk");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), script.as_bytes())
        .expect("write the sfdisk script");
    let out = child.wait_with_output().expect("sfdisk runs");
    assert!(
        out.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

/// A 32 MiB MBR disk at `disk` whose partition 1 (from 1 MiB, FAT16) holds `files`
/// as (path on the FAT, bytes), folders created as needed: a syslinux-style boot
/// partition (`vmlinuz`, `initrd.img` at its root).
pub fn fat_mbr_disk(disk: &Path, files: &[(&str, &[u8])]) -> Option<PathBuf> {
    let mkfs = peer("mkfs.fat")?;
    let mcopy = peer("mcopy")?;
    let mmd = peer("mmd")?;
    partitioned(disk, 32, "label: dos\nstart=2048, size=61440, type=e\n")?;
    let staging = tempdir_beside(disk);
    let fs = staging.join("p1.fat");
    run(Command::new(mkfs)
        .args(["-F", "16", "-n", "BOOT", "-C"])
        .arg(&fs)
        .arg((61440 / 2).to_string()));
    let image = fs.display().to_string();
    let tools = [("MTOOLS_SKIP_CHECK", "1")];
    let mut folders = std::collections::HashSet::new();
    for (path, bytes) in files {
        let path = path.trim_start_matches('/');
        let parts: Vec<&str> = path.split('/').collect();
        for depth in 1..parts.len() {
            let folder = format!("::/{}", parts[..depth].join("/"));
            if !folders.insert(folder.clone()) {
                continue;
            }
            run(Command::new(&mmd)
                .envs(tools)
                .args(["-i", &image])
                .arg(folder));
        }
        let local = staging.join("file");
        std::fs::write(&local, bytes).expect("stage a file");
        run(Command::new(&mcopy)
            .envs(tools)
            .args(["-o", "-i", &image])
            .arg(&local)
            .arg(format!("::/{path}")));
    }
    write_partition(disk, &fs, 2048);
    let _ = std::fs::remove_dir_all(staging);
    Some(disk.to_owned())
}

/// Copies the file system image `fs` into `disk` from sector `start`.
fn write_partition(disk: &Path, fs: &Path, start: u64) {
    let bytes = std::fs::read(fs).expect("read the file system image");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .expect("open the disk");
    std::os::unix::fs::FileExt::write_all_at(&file, &bytes, start * 512)
        .expect("write the file system into its partition");
}

/// A 48 MiB GPT disk at `disk` with a 4 MiB partition 1 holding nothing and partition 2
/// (ext4, from 8 MiB) made by `mkfs.ext4 -d` from `tree`: (path, content) where content
/// `Ok(bytes)` is a file and `Err(target)` a symbolic link.
pub fn ext4_gpt_disk(disk: &Path, tree: &[(&str, Result<&[u8], &str>)]) -> Option<PathBuf> {
    let mkfs = peer("mkfs.ext4")?;
    partitioned(
        disk,
        48,
        "label: gpt\nstart=2048, size=8192, type=L\nstart=16384, size=65536, type=L\n",
    )?;
    let root = tempdir_beside(disk);
    for (path, content) in tree {
        let at = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().expect("a parent")).expect("create folders");
        match content {
            Ok(bytes) => std::fs::write(&at, bytes).expect("write a file"),
            Err(target) => std::os::unix::fs::symlink(target, &at).expect("make a symlink"),
        }
    }
    let fs = root.with_extension("ext4");
    run(Command::new(mkfs)
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&root)
        .arg(&fs)
        .arg("32M"));
    write_partition(disk, &fs, 16384);
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(&fs);
    Some(disk.to_owned())
}

fn tempdir_beside(disk: &Path) -> PathBuf {
    let dir = disk.with_extension("staging");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a staging folder");
    dir
}
