//! The end-to-end boot assets: a Debian kernel, a busybox initramfs and a bootable disk.
//!
//! [`boot_assets`] runs `testkit/scripts/boot-assets.sh` (see its header for every marker
//! the guests print) once per machine and per version of the script, and caches the result
//! under `target/e2e-assets/<hash of the script>/`:
//!
//! - `vmlinuz`: Debian's 6.1 kernel (`apt-get download`, no install);
//! - `initrd.img`: busybox, virtio/e1000/ext4/nbd modules and Debian's `nbd-client`; its
//!   `/init` mounts `root=` (default `/dev/vda2`), or first attaches an NBD export given as
//!   `nbdroot=HOST:PORT/EXPORT` (DHCP on eth0), then `switch_root`s;
//! - `disk.raw`: 64 MiB MBR disk, syslinux on a FAT16 p1, an ext4 busybox root on p2 whose
//!   init prints `BOOTED-FROM-VDISK hostname=<SMBIOS serial or hostname=> root=<dev> ...`,
//!   appends to `/var/e2e/bootlog`, writes 1 MiB, prints `E2E-DONE` and powers off.
//!
//! Nothing is mounted and no root rights are needed; only `apt-get download` touches the
//! network (Debian's registry).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{in_ci, peer, run_output, workspace_root};

/// Programs the build script runs; each is checked with [`peer`].
const PROGRAMS: &[&str] = &[
    "apt-get",
    "dpkg",
    "busybox",
    "nbd-client",
    "sfdisk",
    "mkfs.fat",
    "mkfs.ext4",
    "syslinux",
    "mcopy",
    "cpio",
    "gzip",
    "modinfo",
];

/// How long one build may take (it downloads a 70 MB kernel package).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// Paths of the built assets; they stay valid for as long as the cache is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootAssets {
    /// The kernel (`vmlinuz`), for `qemu -kernel` or TFTP.
    pub kernel: PathBuf,
    /// The initramfs (`initrd.img`, gzip newc cpio).
    pub initrd: PathBuf,
    /// The bootable raw disk image (`disk.raw`); convert it, never write to it.
    pub disk_raw: PathBuf,
}

/// Builds the assets (once, cached) and returns their paths.
///
/// Returns `None`, after printing `SKIPPED` and the reason, when a needed program is
/// missing outside CI. Parallel test binaries share one build through a file lock.
///
/// # Panics
///
/// Under CI when a program is missing, and anywhere when the build fails (the message
/// holds the script's output).
pub fn boot_assets() -> Option<BootAssets> {
    for program in PROGRAMS {
        peer(program)?;
    }
    let script = workspace_root().join("testkit/scripts/boot-assets.sh");
    let bytes =
        std::fs::read(&script).unwrap_or_else(|e| panic!("cannot read {}: {e}", script.display()));
    let cache = workspace_root().join("target/e2e-assets");
    let dir = cache.join(format!("{:016x}", fnv1a(&bytes)));
    if !dir.join("STAMP").is_file() {
        build(&script, &cache, &dir);
    }
    Some(BootAssets {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        disk_raw: dir.join("disk.raw"),
    })
}

/// Runs the script into `dir` under an exclusive lock, unless another process finished
/// the build while this one waited for the lock.
fn build(script: &Path, cache: &Path, dir: &Path) {
    std::fs::create_dir_all(cache)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", cache.display()));
    let lock_path = dir.with_extension("lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if dir.join("STAMP").is_file() {
        return;
    }
    eprintln!(
        "building end-to-end boot assets in {} (about 15 s)",
        dir.display()
    );
    let out = run_output(Command::new("bash").arg(script).arg(dir), BUILD_TIMEOUT);
    assert!(
        out.status.success() && dir.join("STAMP").is_file(),
        "{} {} failed with {} (CI={})\nstdout:\n{}\nstderr:\n{}",
        script.display(),
        dir.display(),
        out.status,
        in_ci(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 64-bit FNV-1a: a stable cache key for the script's bytes (std's hasher may change).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn fnv1a_matches_its_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
