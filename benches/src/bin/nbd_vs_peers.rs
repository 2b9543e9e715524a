//! nbd-proto's server beside qemu-nbd and nbdkit, in one run:
//! - sequential read of a whole image with `nbdcopy ... null:` (4 connections):
//!   ours on a dynamic VHD vs `qemu-nbd -f vpc` on the same VHD, and ours on the raw
//!   file vs `nbdkit file`; wall time, and the CPU time each server spent (on
//!   loopback the client shares the machine, so a server that spends less CPU leaves
//!   more to the client; ours sends from the page cache with sendfile);
//! - random 4 KiB reads with fio's nbd engine at queue depth 1 and 16, ours vs nbdkit
//!   on the raw file (time per read; a ratio above 1 means we are faster);
//! - resident memory with 1 and 1,000 idle connected clients, ours vs nbdkit.
//!
//! Run: `cargo run --release -p provision-benches --bin nbd_vs_peers` (image size in MiB
//! from `NBD_BENCH_MIB`, default 512). Our server runs as a child process (this same
//! binary with `--serve FILE PORT`), so every server is measured the same way.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nbd_proto::driver::client::Client;
use nbd_proto::driver::server::{Server, ServerConfig};
use nbd_proto::{Capabilities, Errno, Export, Extent, SingleExport};
use provision_benches::{best_of, congestion_controls, cpu_time, mib_per_s, report, report_cpu};
use testkit::ChildGuard;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--serve" {
        serve(Path::new(&args[2]), args[3].parse().expect("port"));
        return;
    }
    let peers = ["qemu-img", "qemu-nbd", "nbdkit", "nbdcopy", "fio"];
    if let Some(missing) = peers.iter().find(|p| testkit::find_program(p).is_none()) {
        eprintln!("nbd_vs_peers: `{missing}` is not installed; skipping");
        return;
    }
    let mib: u64 = std::env::var("NBD_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let dir = tempfile::tempdir().expect("temporary folder");
    let raw = dir.path().join("disk.raw");
    let vhd = dir.path().join("disk.vhd");
    make_image(&raw, mib);
    testkit::run(
        Command::new("qemu-img")
            .args([
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                "subformat=dynamic,force_size=on",
            ])
            .arg(&raw)
            .arg(&vhd),
    );
    let bytes = mib << 20;
    println!("nbd_vs_peers: {mib} MiB image (3/4 allocated), dynamic VHD beside it");
    println!("{}", congestion_controls());

    // Sequential reads.
    let ours_vhd = ours(&vhd);
    let qemu = start(
        Command::new("qemu-nbd").args([
            "-f",
            "vpc",
            "-r",
            "-e",
            "16",
            "-x",
            "disk",
            "-b",
            "127.0.0.1",
            "-t",
            "-p",
        ]),
        &vhd,
    );
    let (t_ours, cpu_ours) = seq_read(&ours_vhd);
    let (t_qemu, cpu_qemu) = seq_read(&qemu);
    report(
        &format!(
            "seq read dynamic VHD ({:.0} MiB/s ours)",
            mib_per_s(bytes, t_ours)
        ),
        t_ours,
        "qemu-nbd -f vpc",
        t_qemu,
    );
    report_cpu("  server CPU per read", cpu_ours, "qemu-nbd", cpu_qemu);
    drop(qemu);

    let ours_raw = ours(&raw);
    let kit = start(
        Command::new("nbdkit").args(["-f", "-r", "--ipaddr", "127.0.0.1", "-e", "disk", "-p"]),
        &raw,
    );
    let (t_ours, cpu_ours) = seq_read(&ours_raw);
    let (t_kit, cpu_kit) = seq_read(&kit);
    report(
        &format!("seq read raw ({:.0} MiB/s ours)", mib_per_s(bytes, t_ours)),
        t_ours,
        "nbdkit file",
        t_kit,
    );
    report_cpu("  server CPU per read", cpu_ours, "nbdkit", cpu_kit);

    // Random 4 KiB reads.
    for qd in [1, 16] {
        // Alternate the two servers and keep each one's best of two runs, so a burst
        // of load on the machine does not decide the ratio.
        let (mut ours_t, mut kit_t) = (Duration::MAX, Duration::MAX);
        for _ in 0..2 {
            ours_t = ours_t.min(fio_read_latency(&ours_raw.1, qd, mib));
            kit_t = kit_t.min(fio_read_latency(&kit.1, qd, mib));
        }
        report(
            &format!("random 4 KiB read QD{qd} (per read)"),
            ours_t,
            "nbdkit file",
            kit_t,
        );
    }

    // Memory with idle clients.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for clients in [1usize, 1000] {
        let (ours_kib, _c1) = rss_with_clients(&rt, &ours_raw, clients);
        let (kit_kib, _c2) = rss_with_clients(&rt, &kit, clients);
        println!(
            "{:<48} ours {:>9} KiB  nbdkit file {:>9} KiB  memory ratio {:>6.2}x",
            format!("RSS with {clients} idle client(s)"),
            ours_kib,
            kit_kib,
            kit_kib as f64 / ours_kib.max(1) as f64
        );
    }
}

/// Data in three of every four 2 MiB blocks (incompressible-ish), zeroes in the fourth.
fn make_image(path: &Path, mib: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("image"));
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 2 << 20];
    for b in 0..mib / 2 {
        if b % 4 == 3 {
            block.fill(0);
        } else {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
        }
        f.write_all(&block).expect("writing the image");
    }
}

/// A running server and its export URI.
type Running = (ChildGuard, String);

fn start(cmd: &mut Command, file: &Path) -> Running {
    let port = testkit::free_tcp_port();
    // qemu-nbd takes `-p PORT FILE`; nbdkit takes `-p PORT file FILE`.
    let is_kit = cmd.get_program() == "nbdkit";
    cmd.arg(port.to_string());
    if is_kit {
        cmd.arg("file").arg(file);
    } else {
        cmd.arg(file);
    }
    let child = ChildGuard::spawn(cmd);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    testkit::wait_for_tcp(addr, Duration::from_secs(30));
    (child, format!("nbd://{addr}/disk"))
}

fn ours(file: &Path) -> Running {
    let exe = std::env::current_exe().expect("own path");
    let port = testkit::free_tcp_port();
    let child = ChildGuard::spawn(
        Command::new(exe)
            .arg("--serve")
            .arg(file)
            .arg(port.to_string()),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    testkit::wait_for_tcp(addr, Duration::from_secs(30));
    (child, format!("nbd://{addr}/disk"))
}

/// Best time of three whole-image reads, and the server's mean CPU time per read.
fn seq_read(server: &Running) -> (Duration, Duration) {
    let before = cpu_time(server.0.id());
    let best = best_of(3, || nbdcopy(&server.1));
    (best, (cpu_time(server.0.id()) - before) / 3)
}

fn nbdcopy(uri: &str) {
    testkit::run(Command::new("nbdcopy").args(["--connections=4", uri, "null:"]));
}

/// Mean time per random 4 KiB read from fio's nbd engine.
fn fio_read_latency(uri: &str, qd: u32, mib: u64) -> Duration {
    let out = testkit::run(Command::new("fio").args([
        "--name=r",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        "--rw=randread",
        "--bs=4k",
        &format!("--size={}M", mib.min(256)),
        &format!("--iodepth={qd}"),
        "--runtime=3",
        "--time_based",
        "--output-format=terse",
        "--terse-version=3",
    ]));
    // Terse v3: field 8 (1-based) is read IOPS.
    let iops: f64 = out
        .lines()
        .find(|l| l.starts_with("3;"))
        .and_then(|l| l.split(';').nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read IOPS from fio output:\n{out}"));
    Duration::from_secs_f64(1.0 / iops.max(1.0))
}

fn rss_with_clients(
    rt: &tokio::runtime::Runtime,
    server: &Running,
    n: usize,
) -> (u64, Vec<Client>) {
    let addr: SocketAddr = server
        .1
        .trim_start_matches("nbd://")
        .trim_end_matches("/disk")
        .parse()
        .expect("address");
    let clients = rt.block_on(async {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let config = nbd_proto::client::handshake::ClientConfig {
                export: "disk".into(),
                structured: true,
                base_allocation: false,
            };
            v.push(
                Client::connect(addr, config)
                    .await
                    .expect("client connects"),
            );
        }
        v
    });
    // Idle means idle: give servers time to settle (ours empties its buffer pool).
    std::thread::sleep(Duration::from_secs(5));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.0.id())).expect("status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    (kib, clients)
}

/// Server mode: serves `file` (raw or VHD, read-only) on 127.0.0.1:`port`.
fn serve(file: &Path, port: u16) {
    let disk = vhd::open_disk(file, true).expect("opening the image");
    let provider = Arc::new(SingleExport::new("disk", Arc::new(ReadOnlyDisk(disk))));
    // The same runtime shape as nbd-serve.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        Server::new(provider, ServerConfig::default())
            .serve(listener)
            .await
            .expect("serve");
    });
}

/// The read path of a `vhd::Disk` as an export (what nbd-serve does, read-only).
struct ReadOnlyDisk(Arc<dyn vhd::Disk>);

impl Export for ReadOnlyDisk {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::READ_ONLY | Capabilities::MULTI_CONN | Capabilities::FLUSH
    }
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        self.0.read_at(buf, offset).map_err(|_| Errno::EIO)
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, Errno> {
        let extents = self.0.allocation(offset, len).map_err(|_| Errno::EIO)?;
        Ok(extents
            .into_iter()
            .map(|e| match e.state {
                vhd::ExtentState::Data => Extent::data(e.len),
                vhd::ExtentState::Zero => Extent::hole(e.len),
            })
            .collect())
    }
    fn locate(&self, offset: u64, len: u64) -> Option<Vec<nbd_proto::Located>> {
        provision_core::adapters::nbd::locate(&*self.0, offset, len)
    }
}
