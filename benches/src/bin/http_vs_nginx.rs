//! provisiond's boot files over HTTP (`[http]`) beside nginx serving the same folder,
//! in one run, with curl as the client for both:
//! - one 64 MiB download, and 50 concurrent clients downloading it;
//! - the boot-file step a device pays: a 60 MiB initrd over lock-step TFTP at blksize
//!   1432 (what iPXE does) and over HTTP, both from provisiond, side by side.
//!
//! Every case runs in rounds (`HTTP_BENCH_ROUNDS`, default 3), each timing ours and
//! then the peer; a row gives each side's median and the median of the rounds' ratios
//! with their range.
//!
//! Run: `cargo build --release -p provision-examples --bin provisiond &&
//! cargo run --release -p provision-benches --bin http_vs_nginx` (needs nginx, e.g.
//! Debian's nginx-light, and curl).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use provision_benches::{report_rounds, sibling_binary};
use testkit::ChildGuard;

const MIB: usize = 64;
const INITRD_MIB: usize = 60;

fn main() {
    for peer in ["nginx", "curl"] {
        if testkit::find_program(peer).is_none() {
            eprintln!("http_vs_nginx: `{peer}` is not installed; skipping");
            return;
        }
    }
    let rounds: usize = std::env::var("HTTP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path().join("files");
    std::fs::create_dir_all(&root).expect("the boot-file folder");
    let content: Vec<u8> = (0..MIB << 20)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    std::fs::write(root.join("file"), &content).expect("the test file");
    std::fs::write(root.join("initrd.img"), &content[..INITRD_MIB << 20]).expect("the initrd");
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(dir.path())
        .status();

    let (ours, tftp, _ours_guard) = start_provisiond(dir.path(), &root);
    let (nginx, _nginx_guard) = start_nginx(dir.path(), &root);
    println!(
        "http_vs_nginx: {MIB} MiB file, {rounds} rounds per case; ratio > 1 means ours is faster"
    );

    for clients in [1usize, 50] {
        let (mut t_ours, mut t_nginx) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            t_ours.push(download(ours, "file", clients, content.len()));
            t_nginx.push(download(nginx, "file", clients, content.len()));
        }
        let case = format!("{clients} x curl {MIB} MiB over HTTP");
        report_rounds(&case, &t_ours, "nginx", &t_nginx);
    }

    let (mut over_http, mut over_tftp) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        over_http.push(download(ours, "initrd.img", 1, INITRD_MIB << 20));
        over_tftp.push(tftp_download(tftp, "initrd.img", INITRD_MIB << 20));
    }
    let case = format!("{INITRD_MIB} MiB initrd: HTTP vs TFTP blksize 1432");
    report_rounds(&case, &over_http, "our lock-step TFTP", &over_tftp);
}

/// `clients` concurrent curl downloads of `name`, each from an address of its own
/// (127.0.1.N, as devices on a boot network; provisiond holds 8 connections per
/// address); the time until the last is done.
fn download(server: SocketAddr, name: &str, clients: usize, len: usize) -> Duration {
    let start = Instant::now();
    let children: Vec<_> = (0..clients)
        .map(|i| {
            Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{size_download}"])
                .args(["--interface", &format!("127.0.1.{}", i + 1)])
                .arg(format!("http://{server}/{name}"))
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting curl")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("curl");
        assert!(out.status.success(), "curl failed against {server}");
        let got: usize = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert_eq!(got, len, "curl got {got} bytes of {len} from {server}");
    }
    start.elapsed()
}

fn tftp_download(server: SocketAddr, name: &str, len: usize) -> Duration {
    let start = Instant::now();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--tftp-blksize",
            "1432",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        ])
        .arg(format!("tftp://{server}/{name}"))
        .output()
        .expect("curl");
    let took = start.elapsed();
    let got: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(got, len, "curl got {got} bytes of {len} over TFTP");
    took
}

/// provisiond with `[http]` and `[tftp]` on over `root` (NBD on a free port, no API):
/// its HTTP and TFTP addresses.
fn start_provisiond(dir: &Path, root: &Path) -> (SocketAddr, SocketAddr, ChildGuard) {
    let http = SocketAddr::from(([127, 0, 0, 1], testkit::free_tcp_port()));
    let tftp = SocketAddr::from(([127, 0, 0, 1], testkit::free_udp_port()));
    let config = dir.join("provisiond.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"{store}\"\n[nbd]\nlisten = \"127.0.0.1:{nbd}\"\n[api]\nenabled = false\n\
             [tftp]\nenabled = true\nlisten = \"{tftp}\"\nroot = \"{root}\"\n\
             [http]\nenabled = true\nlisten = \"{http}\"\n",
            store = dir.join("store").display(),
            nbd = testkit::free_tcp_port(),
            root = root.display(),
        ),
    )
    .expect("the configuration");
    let guard = ChildGuard::spawn(
        Command::new(sibling_binary("provisiond"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn"),
    );
    testkit::wait_for_tcp(http, Duration::from_secs(30));
    (http, tftp, guard)
}

/// A running nginx: stopped with `nginx -s stop` (its master then ends its workers;
/// killing the master alone would leave them behind), then killed if still there.
struct Nginx {
    prefix: std::path::PathBuf,
    _master: ChildGuard,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx")
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(self.prefix.join("nginx.conf"))
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// nginx serving `root` with sendfile, as a packager ships it for static files.
fn start_nginx(dir: &Path, root: &Path) -> (SocketAddr, Nginx) {
    let addr = SocketAddr::from(([127, 0, 0, 1], testkit::free_tcp_port()));
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).expect("nginx's folder");
    let config = prefix.join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "daemon off;\nworker_processes auto;\npid {pid};\nerror_log {log} warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on; keepalive_timeout 65;\n\
             server {{ listen {addr}; root {root}; }} }}\n",
            pid = prefix.join("nginx.pid").display(),
            log = prefix.join("logs/error.log").display(),
            root = root.display(),
        ),
    )
    .expect("nginx's configuration");
    let guard = ChildGuard::spawn(
        Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg(prefix.join("logs/error.log")),
    );
    testkit::wait_for_tcp(addr, Duration::from_secs(30));
    (
        addr,
        Nginx {
            prefix,
            _master: guard,
        },
    )
}
