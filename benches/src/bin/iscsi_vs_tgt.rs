//! The iSCSI target beside tgt (`tgtd`) on the same raw file, through libiscsi's
//! `iscsi-perf` (Debian's fio has no libiscsi engine), in one run:
//! - sequential 1 MiB reads, 4 in flight (`-m 4 -b 2048`);
//! - random 4 KiB reads at queue depth 16 (`-m 16 -b 8 -r`);
//! - the same two on a dynamic VHD of the same bytes, ours only, against our raw figure.
//!
//! Each case runs [`RUNS`] times for [`SECONDS`] s; the median IOPS is reported with the
//! ratio (above 1: we are faster). Our target runs as a child process (this binary with
//! `--serve FILE PORT`), tgtd as root on its own portal and control port.
//!
//! Run: `cargo run --release -p provision-benches --bin iscsi_vs_tgt` (as root, for
//! tgtd; image size in MiB from `ISCSI_BENCH_MIB`, default 256).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use testkit::ChildGuard;
use testkit::tgt::Tgt;

/// Runs per case (the median is reported).
const RUNS: usize = 3;
/// Seconds per run.
const SECONDS: u32 = 5;
const IQN: &str = "iqn.2026-01.org.provision:bench";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--serve" {
        serve(Path::new(&args[2]), args[3].parse().expect("port"));
        return;
    }
    for peer in ["iscsi-perf", "tgtd", "tgtadm"] {
        if testkit::find_program(peer).is_none() {
            eprintln!("iscsi_vs_tgt: `{peer}` is not installed; skipping");
            return;
        }
    }
    if !testkit::is_root() {
        eprintln!("iscsi_vs_tgt: tgtd needs root; skipping");
        return;
    }
    let mib: u64 = std::env::var("ISCSI_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir().expect("temporary folder");
    let raw = dir.path().join("disk.raw");
    let vhd = dir.path().join("disk.vhd");
    let bytes: Vec<u8> = (0..mib << 20)
        .map(|i| ((i >> 9) as u8) ^ (i % 251) as u8)
        .collect();
    std::fs::write(&raw, bytes).expect("image");
    vhd::convert_file(
        &raw,
        &vhd,
        vhd::Target::Dynamic {
            block_size: 2 << 20,
        },
        &mut |_, _| {},
    )
    .expect("a dynamic VHD of the image");
    let cases: [(&str, &[&str]); 2] = [
        (
            "sequential 1 MiB reads, 4 in flight",
            &["-m", "4", "-b", "2048"],
        ),
        (
            "random 4 KiB reads, queue depth 16",
            &["-m", "16", "-b", "8", "-r"],
        ),
    ];
    let ours = Ours::start(&raw);
    let ours_raw: Vec<f64> = cases
        .iter()
        .map(|(_, a)| median_iops(&ours.lun, a))
        .collect();
    drop(ours);
    let tgt = Tgt::start(Path::new("tgtd"), Path::new("tgtadm"), IQN, &raw);
    let tgt_iops: Vec<f64> = cases
        .iter()
        .map(|(_, a)| median_iops(&tgt.lun, a))
        .collect();
    drop(tgt);
    let ours = Ours::start(&vhd);
    let ours_vhd: Vec<f64> = cases
        .iter()
        .map(|(_, a)| median_iops(&ours.lun, a))
        .collect();
    drop(ours);
    println!("iSCSI, {mib} MiB image, iscsi-perf, median of {RUNS} runs of {SECONDS} s (IOPS):");
    for (i, (case, _)) in cases.iter().enumerate() {
        println!(
            "{case:<40} ours {:>9.0}  tgtd {:>9.0}  ratio {:>5.2}x",
            ours_raw[i],
            tgt_iops[i],
            ours_raw[i] / tgt_iops[i].max(1.0)
        );
        println!(
            "{:<40} ours {:>9.0}  ours raw {:>6.0}  ratio {:>5.2}x",
            format!("{case} (dynamic VHD)"),
            ours_vhd[i],
            ours_raw[i],
            ours_vhd[i] / ours_raw[i].max(1.0)
        );
    }
}

/// The median of [`RUNS`] runs of `iscsi-perf` on `lun` with `args`: IOPS.
fn median_iops(lun: &str, args: &[&str]) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let out = testkit::run_output(
                Command::new("iscsi-perf")
                    .args(["-t", &SECONDS.to_string()])
                    .args(args)
                    .arg(lun),
                Duration::from_secs(u64::from(SECONDS) + 30),
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            // The last "iops average N" is the whole run's.
            text.rsplit("iops average ")
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("iscsi-perf {args:?} {lun}: no IOPS in {text}"))
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// Our target, this binary with `--serve`.
struct Ours {
    _child: ChildGuard,
    lun: String,
}

impl Ours {
    fn start(file: &Path) -> Ours {
        let port = testkit::free_tcp_port();
        let exe = std::env::current_exe().expect("own path");
        let child = ChildGuard::spawn(
            Command::new(exe)
                .arg("--serve")
                .arg(file)
                .arg(port.to_string()),
        );
        testkit::wait_for_tcp(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(20),
        );
        Ours {
            _child: child,
            lun: format!("iscsi://127.0.0.1:{port}/{IQN}/0"),
        }
    }
}

/// `--serve FILE PORT`: our target over `FILE` (raw or VHD), as `iscsi-serve` serves it.
fn serve(file: &Path, port: u16) {
    use iscsi::scsi::{Identity, Lu};
    use iscsi::session::{Target, TargetConfig};
    let disk = vhd::open_disk(file, true).expect("image");
    let lu = Lu::new(
        Arc::new(provision_core::adapters::iscsi::DiskLun::new(disk)),
        Identity::for_target(IQN),
    );
    let target = Arc::new(Target::new(TargetConfig::new(IQN), Arc::new(lu)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("listen");
        iscsi::driver::serve(
            listener,
            target,
            iscsi::driver::ServerConfig::default(),
            std::future::pending::<()>(),
        )
        .await
        .expect("serve");
    });
}
