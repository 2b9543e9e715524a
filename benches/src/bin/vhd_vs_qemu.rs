//! VHD side by side with the peers, one run, ratios printed (above 1: we are faster).
//!
//! 1. dynamic VHD -> raw: `vhd::convert` vs `qemu-img convert -f vpc -O raw`;
//! 2. random 4 KiB reads through differencing chains of depth 1, 4 and 8 vs the same
//!    reads (pread) of the flattened raw file;
//! 3. sequential 1 MiB writes into a new dynamic image vs into a raw file (with fsync);
//! 4. raw -> dynamic VHD (what `provision vdisk import` does): a sparse raw file of
//!    `VHD_SPARSE_MIB` (default 1536) with 12 KiB of data, and the full raw file of case
//!    1, `vhd::convert` vs `qemu-img convert -f raw -O vpc`, medians of 3 runs.
//!
//! Run: `cargo run --release -p provision-benches --bin vhd_vs_qemu` (about a minute).
//! `VHD_BENCH_MIB` sets the disk size (default 256).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use provision_benches::{best_of, mib_per_s, report};
use vhd::{CreateOptions, Disk, OpenOptions, Target};

fn pattern(seed: u64, buf: &mut [u8]) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

fn main() {
    let mib: u64 = std::env::var("VHD_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = mib << 20;
    let dir =
        tempfile::tempdir_in(std::env::var("VHD_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
            .or_else(|_| tempfile::tempdir())
            .expect("temporary folder");
    let d = dir.path();
    println!("vhd benchmarks: {mib} MiB disks in {}", d.display());

    // The base: a dynamic image with three of every four 2 MiB blocks holding data.
    let base_path = d.join("base.vhd");
    let base = CreateOptions::dynamic(size)
        .create(&base_path)
        .expect("create base");
    let mut block = vec![0u8; 2 << 20];
    for b in 0..size / (2 << 20) {
        if b % 4 != 3 {
            pattern(b + 1, &mut block);
            base.write_at(&block, b * (2 << 20)).expect("fill base");
        }
    }
    base.flush().expect("flush");
    drop(base);

    convert_case(d, &base_path, size);
    import_case(d);
    chain_reads(d, &base_path, size);
    sequential_writes(d, size);
}

/// Raw files into dynamic VHDs, sparse and full: medians of three runs each side.
fn import_case(d: &Path) {
    let Some(qemu_img) = testkit::find_program("qemu-img") else {
        println!("qemu-img not installed: import case skipped");
        return;
    };
    let mib: u64 = std::env::var("VHD_SPARSE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1536);
    let sparse = d.join("sparse.raw");
    let file = std::fs::File::create(&sparse).expect("sparse file");
    file.set_len(mib << 20).expect("sparse size");
    file.write_all_at(&[0x5a; 8192], 3 << 20).expect("data");
    file.write_all_at(&[0xa5; 4096], (mib << 20) / 2)
        .expect("data");
    drop(file);
    for (what, raw) in [
        (format!("sparse {mib} MiB raw"), sparse),
        (
            "raw with data in 3 of 4 blocks (case 1's output)".to_owned(),
            d.join("ours.raw"),
        ),
    ] {
        if !raw.exists() {
            continue;
        }
        let ours_out = d.join("import-ours.vhd");
        let qemu_out = d.join("import-qemu.vhd");
        let ours = provision_benches::median_of(3, || {
            let _ = std::fs::remove_file(&ours_out);
            let src = vhd::open_disk(&raw, true).expect("open raw");
            vhd::convert(src.as_ref(), &ours_out, Target::dynamic(), &mut |_, _| {})
                .expect("convert");
        });
        let peer = provision_benches::median_of(3, || {
            let st = Command::new(&qemu_img)
                .args(["convert", "-t", "writeback", "-f", "raw", "-O", "vpc"])
                .args(["-o", "subformat=dynamic"])
                .arg(&raw)
                .arg(&qemu_out)
                .status()
                .expect("qemu-img");
            assert!(st.success());
        });
        let same = Command::new(&qemu_img)
            .args(["compare", "-q", "-f", "raw", "-F", "vpc"])
            .arg(&raw)
            .arg(&ours_out)
            .status()
            .expect("qemu-img compare");
        assert!(
            same.success(),
            "our VHD of {} differs from it",
            raw.display()
        );
        report(
            &format!(
                "convert {what} -> dynamic VHD, median of 3 (ours {:.1?}-{:.1?}, qemu-img {:.1?}-{:.1?})",
                ours.1, ours.2, peer.1, peer.2
            ),
            ours.0,
            "qemu-img",
            peer.0,
        );
    }
}

fn convert_case(d: &Path, base_path: &Path, size: u64) {
    let Some(qemu_img) = testkit::find_program("qemu-img") else {
        println!("qemu-img not installed: convert case skipped");
        return;
    };
    let ours_out = d.join("ours.raw");
    let qemu_out = d.join("qemu.raw");
    let ours = best_of(3, || {
        let src = OpenOptions::new(true).open(base_path).expect("open");
        vhd::convert(&src, &ours_out, Target::Raw, &mut |_, _| {}).expect("convert");
    });
    // qemu-img convert writes its output with cache=unsafe (no flush) unless told
    // otherwise; ours flushes, so the fair peer is `-t writeback` (flush at the end).
    let qemu = |cache: &str| {
        best_of(3, || {
            let st = Command::new(&qemu_img)
                .args(["convert", "-t", cache, "-f", "vpc", "-O", "raw"])
                .arg(base_path)
                .arg(&qemu_out)
                .status()
                .expect("qemu-img");
            assert!(st.success());
        })
    };
    let peer = qemu("writeback");
    let peer_unsafe = qemu("unsafe");
    assert!(
        std::fs::read(&ours_out).unwrap() == std::fs::read(&qemu_out).unwrap(),
        "outputs differ"
    );
    let rate = mib_per_s(size, ours) as u64;
    report(
        &format!("convert dynamic -> raw, both flush ({rate} MiB/s)"),
        ours,
        "qemu-img",
        peer,
    );
    report(
        "convert dynamic -> raw, qemu without flush",
        ours,
        "qemu-img",
        peer_unsafe,
    );
}

fn chain_reads(d: &Path, base_path: &Path, size: u64) {
    const READS: usize = 200_000;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let offsets: Vec<u64> = (0..READS)
        .map(|_| (next() % (size / 4096)) * 4096)
        .collect();
    let mut parent = base_path.to_path_buf();
    let mut depth = 0;
    let mut buf = vec![0u8; 4096];
    for target in [1, 4, 8] {
        while depth < target {
            depth += 1;
            let child_path = d.join(format!("level{depth}.vhd"));
            let child = vhd::create_differencing(&child_path, &parent).expect("child");
            // 400 scattered 4 KiB writes per level (partial bitmaps in many blocks).
            let mut data = vec![0u8; 4096];
            for i in 0..400u64 {
                pattern(depth * 1000 + i, &mut data);
                let off = (next() % (size / 4096)) * 4096 + 512 * (i % 3);
                let off = off.min(size - 4096);
                child.write_at(&data, off).expect("child write");
            }
            child.flush().expect("flush");
            parent = child_path;
        }
        let chain = Arc::new(OpenOptions::new(true).open(&parent).expect("open chain"));
        let flat = d.join(format!("flat{depth}.raw"));
        vhd::convert(chain.as_ref(), &flat, Target::Raw, &mut |_, _| {}).expect("flatten");
        let flat_file = std::fs::File::open(&flat).expect("flat");
        // Same bytes both ways.
        for &o in offsets.iter().take(200) {
            let mut a = vec![0u8; 4096];
            chain.read_at(&mut a, o).unwrap();
            flat_file.read_exact_at(&mut buf, o).unwrap();
            assert_eq!(a, buf, "chain and flat file differ at {o}");
        }
        let ours = best_of(5, || {
            for &o in &offsets {
                chain.read_at(&mut buf, o).expect("read");
            }
        });
        let peer = best_of(5, || {
            for &o in &offsets {
                flat_file.read_exact_at(&mut buf, o).expect("read");
            }
        });
        report(
            &format!("{READS} random 4 KiB reads, chain depth {depth}"),
            ours,
            "raw pread",
            peer,
        );
    }
}

fn sequential_writes(d: &Path, size: u64) {
    let mut chunk = vec![0u8; 1 << 20];
    pattern(77, &mut chunk);
    let ours = best_of(3, || {
        let path = d.join("seq.vhd");
        let img = CreateOptions::dynamic(size).create(&path).expect("create");
        for i in 0..size / (1 << 20) {
            img.write_at(&chunk, i << 20).expect("write");
        }
        img.flush().expect("flush");
    });
    let peer = best_of(3, || {
        let path = d.join("seq.raw");
        let f = std::fs::File::create(&path).expect("create");
        for i in 0..size / (1 << 20) {
            f.write_all_at(&chunk, i << 20).expect("write");
        }
        f.sync_data().expect("fsync");
    });
    report(
        &format!(
            "sequential 1 MiB writes, new dynamic ({} MiB/s)",
            mib_per_s(size, ours) as u64
        ),
        ours,
        "raw file",
        peer,
    );
}
