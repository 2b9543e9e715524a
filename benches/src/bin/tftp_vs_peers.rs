//! The tftp server beside tftpd-hpa and dnsmasq's TFTP, in one run, with the same clients
//! for every server (curl, what users fetch with, and atftp, which also does windowsize):
//! - one 64 MiB download at blksize 512, 1468, 8192 and 65464, lock-step (windowsize 1)
//!   with both clients, and windowsize 16 with atftp (tftpd-hpa 5.2 and dnsmasq ignore
//!   windowsize and fall back to lock-step: that is the point of those rows);
//! - 20 concurrent clients downloading the same file at blksize 1468: curl and atftp
//!   lock-step, atftp windowsize 16.
//!
//! Every case runs in rounds (`TFTP_BENCH_ROUNDS`, default 3), each round timing ours and
//! then each peer, so a burst of load hits both; a row gives the median time of each side
//! and the median of the rounds' ratios with their range.
//!
//! Run: `cargo run --release -p provision-benches --bin tftp_vs_peers` (file size in MiB
//! from `TFTP_BENCH_MIB`, default 64; our busy-poll budget from `TFTP_BENCH_BUSY_POLL_US`,
//! default 50). Our server runs as a child process (this binary
//! with `--serve ROOT PORT`), so every server is measured the same way. Needs root for
//! tftpd-hpa's chroot (`-s`) and for dnsmasq, whose TFTP server always uses port 69
//! (dnsmasq 2.90 has no option to move it): it listens on 127.0.0.69:69.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use provision_benches::report_rounds;
use testkit::ChildGuard;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--serve" {
        serve(Path::new(&args[2]), args[3].parse().expect("port"));
        return;
    }
    for peer in ["atftp", "curl", "in.tftpd", "dnsmasq"] {
        if testkit::find_program(peer).is_none() {
            eprintln!("tftp_vs_peers: `{peer}` is not installed; skipping");
            return;
        }
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mib = env("TFTP_BENCH_MIB", 64);
    let rounds = env("TFTP_BENCH_ROUNDS", 3).max(1);
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
    println!(
        "tftp_vs_peers: {mib} MiB file, {rounds} rounds per case; ratio > 1 means ours is faster"
    );
    let mut servers = vec![("tftpd-hpa", hpa.1)];
    if let Some(d) = &dnsmasq {
        servers.push(("dnsmasq", d.1));
    }
    let mut cases = Vec::new();
    for blksize in [512u16, 1468, 8192, 65464] {
        cases.push(Case::one(Client::Curl, blksize, 1));
        cases.push(Case::one(Client::Atftp, blksize, 1));
        cases.push(Case::one(Client::Atftp, blksize, 16));
    }
    cases.push(Case::crowd(Client::Curl, 1));
    cases.push(Case::crowd(Client::Atftp, 1));
    cases.push(Case::crowd(Client::Atftp, 16));
    for case in cases {
        let mut t_ours = Vec::new();
        let mut t_peers = vec![Vec::new(); servers.len()];
        for _ in 0..rounds {
            t_ours.push(case.run(ours.1, out.path(), &content));
            for (t, &(_, port)) in t_peers.iter_mut().zip(&servers) {
                t.push(case.run(port, out.path(), &content));
            }
        }
        for (t_peer, &(name, _)) in t_peers.iter().zip(&servers) {
            report_rounds(&case.name(mib), &t_ours, name, t_peer);
        }
    }
    drop((ours, hpa, dnsmasq));
}

/// Where a server listens.
type Target = (&'static str, u16);

#[derive(Debug, Clone, Copy)]
enum Client {
    Curl,
    Atftp,
}

/// One measured case: `clients` downloads of the whole file at once.
struct Case {
    client: Client,
    blksize: u16,
    windowsize: u16,
    clients: usize,
}

impl Case {
    fn one(client: Client, blksize: u16, windowsize: u16) -> Case {
        Case {
            client,
            blksize,
            windowsize,
            clients: 1,
        }
    }

    /// Twenty clients at blksize 1468.
    fn crowd(client: Client, windowsize: u16) -> Case {
        Case {
            clients: 20,
            ..Case::one(client, 1468, windowsize)
        }
    }

    fn name(&self, mib: usize) -> String {
        let client = match self.client {
            Client::Curl => "curl",
            Client::Atftp => "atftp",
        };
        let who = match self.clients {
            1 => String::new(),
            n => format!("{n} x "),
        };
        format!(
            "{who}{client} {mib} MiB blksize {} windowsize {}",
            self.blksize, self.windowsize
        )
    }

    fn command(&self, port: Target, target: &Path) -> Command {
        let mut c = match self.client {
            Client::Curl => {
                let mut c = Command::new("curl");
                c.args(["-sS", "--tftp-blksize", &self.blksize.to_string(), "-o"])
                    .arg(target)
                    .arg(format!("tftp://{}:{}/file", port.0, port.1));
                c
            }
            Client::Atftp => {
                let mut c = Command::new("atftp");
                c.args(["--option", &format!("blksize {}", self.blksize)]);
                if self.windowsize > 1 {
                    c.args(["--option", &format!("windowsize {}", self.windowsize)]);
                }
                c.args(["-g", "-r", "file", "-l"])
                    .arg(target)
                    .args([port.0, &port.1.to_string()]);
                c
            }
        };
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }

    /// The time of the downloads alone; each download is checked after it.
    fn run(&self, port: Target, dir: &Path, content: &[u8]) -> Duration {
        let start = Instant::now();
        let children: Vec<(std::process::Child, PathBuf)> = (0..self.clients)
            .map(|i| {
                let target = dir.join(format!("c{i}"));
                let child = self
                    .command(port, &target)
                    .spawn()
                    .expect("starting the client");
                (child, target)
            })
            .collect();
        let mut targets = Vec::new();
        for (mut child, target) in children {
            let status = child.wait().expect("waiting for the client");
            assert!(
                status.success(),
                "{:?} failed against {port:?}: {status}",
                self.client
            );
            targets.push(target);
        }
        let took = start.elapsed();
        for target in targets {
            check(&target, content);
        }
        took
    }
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
