//! The tftp server beside tftpd-hpa and dnsmasq's TFTP, in one run, with the same client
//! (atftp) for every server:
//! - one 64 MiB download at blksize 512, 1468 and 8192, windowsize 1 and 16 (tftpd-hpa
//!   5.2 and dnsmasq ignore windowsize and fall back to lockstep: that is the point of
//!   the windowsize 16 rows);
//! - 20 concurrent clients downloading the same 64 MiB file at blksize 1468.
//!
//! Run: `cargo run --release -p provision-benches --bin tftp_vs_peers` (file size in MiB
//! from `TFTP_BENCH_MIB`, default 64; our busy-poll budget from `TFTP_BENCH_BUSY_POLL_US`,
//! default 50). Our server runs as a child process (this binary
//! with `--serve ROOT PORT`), so every server is measured the same way. Needs root for
//! tftpd-hpa's chroot (`-s`) and for dnsmasq, whose TFTP server always uses port 69
//! (dnsmasq 2.90 has no option to move it): it listens on 127.0.0.69:69.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use provision_benches::{mib_per_s, report};
use testkit::ChildGuard;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--serve" {
        serve(Path::new(&args[2]), args[3].parse().expect("port"));
        return;
    }
    for peer in ["atftp", "in.tftpd", "dnsmasq"] {
        if testkit::find_program(peer).is_none() {
            eprintln!("tftp_vs_peers: `{peer}` is not installed; skipping");
            return;
        }
    }
    let mib: usize = std::env::var("TFTP_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let root = tempfile::tempdir().expect("temporary folder");
    let out = tempfile::tempdir().expect("temporary folder");
    let content: Vec<u8> = (0..mib << 20)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    std::fs::write(root.path().join("file"), &content).expect("writing the test file");
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(root.path())
        .status();

    let ours = start_ours(root.path());
    let hpa = start_tftpd_hpa(root.path());
    let dnsmasq = start_dnsmasq(root.path());
    println!("tftp_vs_peers: {mib} MiB file, client atftp; ratio > 1 means ours is faster");
    let mut servers = vec![("tftpd-hpa", hpa.1)];
    if let Some(d) = &dnsmasq {
        servers.push(("dnsmasq", d.1));
    }
    for blksize in [512u16, 1468, 8192] {
        for windowsize in [1u16, 16] {
            let runs = if blksize == 512 { 2 } else { 3 };
            // Time of the download alone (the check after it is not counted).
            let fetch = |port: Target| {
                let target = out.path().join("one");
                let start = Instant::now();
                atftp(port, blksize, windowsize, &target);
                let took = start.elapsed();
                check(&target, &content);
                took
            };
            // Alternate the servers and keep each one's best run, so a burst of load
            // on the machine does not decide the ratio.
            let mut t_ours = Duration::MAX;
            let mut t_peers = vec![Duration::MAX; servers.len()];
            for _ in 0..runs {
                t_ours = t_ours.min(fetch(ours.1));
                for (t, &(_, port)) in t_peers.iter_mut().zip(&servers) {
                    *t = (*t).min(fetch(port));
                }
            }
            for (&t_peer, &(name, _)) in t_peers.iter().zip(&servers) {
                report(
                    &format!("{mib} MiB blksize {blksize} windowsize {windowsize}"),
                    t_ours,
                    name,
                    t_peer,
                );
            }
            println!(
                "    ours: {:.1} MiB/s",
                mib_per_s(content.len() as u64, t_ours)
            );
        }
    }
    for windowsize in [1u16, 16] {
        let concurrent = |port: Target| {
            let start = Instant::now();
            let children: Vec<_> = (0..20)
                .map(|i| {
                    let target = out.path().join(format!("c{i}"));
                    let child = atftp_command(port, 1468, windowsize, &target)
                        .spawn()
                        .expect("starting atftp");
                    (child, target)
                })
                .collect();
            let mut targets = Vec::new();
            for (mut child, target) in children {
                let status = child.wait().expect("waiting for atftp");
                assert!(status.success(), "atftp failed: {status}");
                targets.push(target);
            }
            // Time of the downloads alone, as for one client.
            let took = start.elapsed();
            for target in targets {
                check(&target, &content);
            }
            took
        };
        let t_ours = concurrent(ours.1);
        for &(name, port) in &servers {
            let t_peer = concurrent(port);
            report(
                &format!("20 clients x {mib} MiB blksize 1468 windowsize {windowsize}"),
                t_ours,
                name,
                t_peer,
            );
        }
    }
    drop((ours, hpa, dnsmasq));
}

/// Where a server listens.
type Target = (&'static str, u16);

fn atftp_command(port: Target, blksize: u16, windowsize: u16, target: &Path) -> Command {
    let mut c = Command::new("atftp");
    c.args(["--option", &format!("blksize {blksize}")]);
    if windowsize > 1 {
        c.args(["--option", &format!("windowsize {windowsize}")]);
    }
    c.args(["-g", "-r", "file", "-l"])
        .arg(target)
        .args([port.0, &port.1.to_string()]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

fn atftp(port: Target, blksize: u16, windowsize: u16, target: &Path) {
    let status = atftp_command(port, blksize, windowsize, target)
        .status()
        .expect("starting atftp");
    assert!(status.success(), "atftp failed against {port:?}: {status}");
}

fn check(path: &Path, content: &[u8]) {
    let got = std::fs::read(path).expect("reading a download");
    assert!(
        got == content,
        "{} differs from the served file",
        path.display()
    );
    let _ = std::fs::remove_file(path);
}

/// Waits until a TFTP server answers a request on `port`.
fn wait_ready(port: Target, what: &str) -> bool {
    let probe = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    while start.elapsed() < Duration::from_secs(20) {
        let _ = probe.send_to(b"\x00\x01.missing\x00octet\x00", port);
        if probe.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    eprintln!("{what} did not answer on {port:?}");
    false
}

fn start_ours(root: &Path) -> (ChildGuard, Target) {
    let port = testkit::free_udp_port();
    let me = std::env::current_exe().expect("own path");
    let guard = ChildGuard::spawn(
        Command::new(me)
            .arg("--serve")
            .arg(root)
            .arg(port.to_string()),
    );
    assert!(wait_ready(("127.0.0.1", port), "ours"));
    (guard, ("127.0.0.1", port))
}

fn start_tftpd_hpa(root: &Path) -> (ChildGuard, Target) {
    let port = testkit::free_udp_port();
    let guard = ChildGuard::spawn(
        Command::new(testkit::find_program("in.tftpd").expect("in.tftpd"))
            .args(["-L", "-u", "root", "-s"])
            .arg(root)
            .args(["-a", &format!("127.0.0.1:{port}")]),
    );
    assert!(wait_ready(("127.0.0.1", port), "tftpd-hpa"));
    (guard, ("127.0.0.1", port))
}

fn start_dnsmasq(root: &Path) -> Option<(ChildGuard, Target)> {
    let target = ("127.0.0.69", 69);
    let guard = ChildGuard::spawn(
        Command::new(testkit::find_program("dnsmasq").expect("dnsmasq"))
            .args([
                "-d",
                "-C",
                "/dev/null",
                "-p",
                "0",
                "--enable-tftp",
                "--quiet-tftp",
            ])
            .arg(format!("--tftp-root={}", root.display()))
            .args([
                "--listen-address=127.0.0.69",
                "--bind-interfaces",
                "-u",
                "root",
            ]),
    );
    if !wait_ready(target, "dnsmasq") {
        eprintln!("skipping dnsmasq (is port 69 on 127.0.0.69 taken, or are we not root?)");
        return None;
    }
    Some((guard, target))
}

/// The `--serve ROOT PORT` mode: our server with its defaults, as `tftp-serve` runs it.
fn serve(root: &Path, port: u16) {
    // TFTP_BENCH_RUNTIME=current runs our server on a single-threaded runtime.
    let runtime = if std::env::var("TFTP_BENCH_RUNTIME").is_ok_and(|v| v == "current") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    runtime.block_on(async {
        let provider = tftp::DirProvider::new(root).expect("root");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // TFTP_BENCH_BUSY_POLL_US overrides the busy-poll budget (0 turns it off).
        let mut config = tftp::ServerConfig::default();
        if let Some(us) = std::env::var("TFTP_BENCH_BUSY_POLL_US")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.busy_poll = std::time::Duration::from_micros(us);
        }
        let server = tftp::Server::bind(addr, provider, config)
            .await
            .expect("bind");
        server.run().await.expect("serving");
    });
}
