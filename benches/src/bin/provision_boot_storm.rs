//! Boot storm: many devices read the same working set at once, writing a little, each
//! through its own copy-on-write view. provisiond (standard-mode sessions) beside
//! nbd-server (`copyonwrite = true`, per-connection diff files) and qemu-nbd
//! (`--snapshot`, which shares one overlay among all clients) serving the same data.
//!
//! Run: `cargo build --release -p provision-examples --bin provisiond --bin provision &&
//!       cargo run --release -p provision-benches --bin provision_boot_storm`
//! provisiond runs twice: write caches in RAM, and on disk (the default, durable).
//! Environment: `STORM_CLIENTS` (default 100), `STORM_MIB` (working set, default 256).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nbd_proto::client::handshake::ClientConfig;
use nbd_proto::driver::client::Client;
use provision_benches::{
    congestion_controls, cpu_time, mib_per_s, report, report_cpu, sibling_binary,
};
use provision_core::{DeviceType, Mac, Mode, Store, import_vdisk};
use testkit::ChildGuard;

const REQUEST: u64 = 128 << 10;
const QUEUE_DEPTH: u64 = 4;
/// One small write after every this many bytes read.
const WRITE_EVERY: u64 = 16 << 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mac(n: u64) -> Mac {
    Mac([0x52, 0x54, 0, 0xee, (n >> 8) as u8, n as u8])
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The process ids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // Fields after the command's closing parenthesis: state, ppid, ...
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Resident memory of a server: the process and its children (nbd-server forks one per
/// connection).
fn server_rss_kib(pid: u32) -> u64 {
    rss_kib(pid) + children(pid).into_iter().map(rss_kib).sum::<u64>()
}

/// CPU time a server has used so far: the process and its living children.
fn server_cpu(pid: u32) -> Duration {
    cpu_time(pid) + children(pid).into_iter().map(cpu_time).sum::<Duration>()
}

struct Outcome {
    elapsed: Duration,
    bytes: u64,
    idle_rss_kib: u64,
    base_rss_kib: u64,
    cpu: Duration,
}

/// Connects every client, measures the server's memory, then runs the storm.
async fn storm(addr: SocketAddr, exports: Vec<String>, size: u64, pid: u32) -> Outcome {
    let base_rss_kib = server_rss_kib(pid);
    let mut clients = Vec::new();
    for export in exports {
        let config = ClientConfig {
            export,
            structured: true,
            base_allocation: false,
        };
        clients.push(
            Client::connect(addr, config)
                .await
                .expect("connecting a storm client"),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss_kib = server_rss_kib(pid);
    let cpu_before = server_cpu(pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    // Connections stay open until the server's CPU time is read (nbd-server's
    // per-connection processes take theirs with them when they exit).
    for (n, client) in clients.iter().cloned().enumerate() {
        for lane in 0..QUEUE_DEPTH {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut read = 0;
                let mut offset = lane * REQUEST;
                while offset < size {
                    let len = REQUEST.min(size - offset) as u32;
                    let data = client.read(offset, len).await.expect("storm read");
                    read += data.len() as u64;
                    if lane == 0 && offset.is_multiple_of(WRITE_EVERY) {
                        let note = vec![n as u8; 64 << 10];
                        client.write(offset, &note, 0).await.expect("storm write");
                    }
                    offset += REQUEST * QUEUE_DEPTH;
                }
                read
            }));
        }
    }
    let mut bytes = 0;
    for task in tasks {
        bytes += task.await.expect("a storm task panicked");
    }
    let elapsed = start.elapsed();
    let cpu = server_cpu(pid).saturating_sub(cpu_before);
    drop(clients);
    Outcome {
        elapsed,
        bytes,
        idle_rss_kib,
        base_rss_kib,
        cpu,
    }
}

fn print(name: &str, clients: u64, o: &Outcome) {
    println!(
        "{name:<34} {:>8.0} MiB/s aggregate, last client done after {:>6.2} s, server CPU {:>6.2} s, server RSS {:>7} KiB idle with {clients} clients ({:>5} KiB per idle session)",
        mib_per_s(o.bytes, o.elapsed),
        o.elapsed.as_secs_f64(),
        o.cpu.as_secs_f64(),
        o.idle_rss_kib,
        o.idle_rss_kib.saturating_sub(o.base_rss_kib) / clients.max(1),
    );
}

fn wait(addr: SocketAddr) {
    testkit::wait_for_tcp(addr, Duration::from_secs(30));
}

fn main() {
    let clients = env_u64("STORM_CLIENTS", 100);
    let size = env_u64("STORM_MIB", 256) << 20;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let raw = dir.path().join("working-set.raw");
    let data: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1)
        .collect();
    std::fs::write(&raw, &data).expect("writing the working set");
    drop(data);

    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).expect("a store");
    import_vdisk(&store, "os", &raw, "", &mut |_, _| {}).expect("importing the working set");
    for n in 0..clients {
        store
            .add_device(mac(n), &format!("seat-{n}"), None, DeviceType::Production)
            .unwrap();
        store
            .assign(&format!("seat-{n}"), "os", Mode::Standard, None)
            .unwrap();
    }
    drop(store);
    let vhd = store_dir.join("os/v0.vhd");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "boot storm: {clients} clients, {} MiB working set each, QD {QUEUE_DEPTH}, 128 KiB reads",
        size >> 20
    );
    println!("{}", congestion_controls());

    // provisiond: standard-mode sessions, one write cache per device, in RAM and on
    // disk (the default: durable, synced on FLUSH).
    let ours: Vec<(&str, Outcome)> = ["ram", "disk"]
        .into_iter()
        .map(|cache| (cache, ours(&runtime, dir.path(), cache, clients, size)))
        .collect();

    // nbd-server with copyonwrite: a diff file per connection.
    if let Some(nbd_server) = testkit::find_program("nbd-server") {
        let port = testkit::free_tcp_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let conf = dir.path().join("nbd-server.conf");
        std::fs::write(
            &conf,
            format!(
                "[generic]\nlistenaddr = 127.0.0.1\nport = {port}\nallowlist = false\n[storm]\nexportname = {}\ncopyonwrite = true\nmaxconnections = {}\n",
                raw.display(),
                clients + 10
            ),
        )
        .unwrap();
        // nbd-server daemonizes (its -d mode serves one client only): find it by its
        // PID file, and stop it and its per-connection children by PID afterwards.
        let pid_file = dir.path().join("nbd-server.pid");
        testkit::run(
            Command::new(nbd_server)
                .arg("-C")
                .arg(&conf)
                .arg("-p")
                .arg(&pid_file),
        );
        wait(addr);
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let exports = (0..clients).map(|_| "storm".to_owned()).collect();
        let theirs = runtime.block_on(storm(addr, exports, size, pid));
        for p in children(pid).into_iter().chain([pid]) {
            let _ = Command::new("kill").arg(p.to_string()).status();
        }
        print("nbd-server (copyonwrite)", clients, &theirs);
        compare(&ours, "nbd-server", &theirs);
    } else {
        println!("nbd-server not installed (Debian package nbd-server): skipped");
    }

    // qemu-nbd --snapshot on the same VHD (one overlay shared by all clients).
    if let Some(qemu_nbd) = testkit::find_program("qemu-nbd") {
        let port = testkit::free_tcp_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let peer = ChildGuard::spawn(
            Command::new(qemu_nbd)
                .args([
                    "-f",
                    "vpc",
                    "--snapshot",
                    "-x",
                    "storm",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .args([
                    "--shared",
                    &(clients + 10).to_string(),
                    "-t",
                    "--cache=none",
                    "--aio=threads",
                ])
                .arg(path_str(&vhd)),
        );
        wait(addr);
        let exports = (0..clients).map(|_| "storm".to_owned()).collect();
        let theirs = runtime.block_on(storm(addr, exports, size, peer.id()));
        drop(peer);
        print("qemu-nbd --snapshot (shared overlay)", clients, &theirs);
        compare(&ours, "qemu-nbd", &theirs);
    } else {
        println!("qemu-nbd not installed (Debian package qemu-utils): skipped");
    }
}

/// One storm through provisiond with write caches in `cache` (`ram` or `disk`).
fn ours(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    cache: &str,
    clients: u64,
    size: u64,
) -> Outcome {
    let port = testkit::free_tcp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let api = format!("127.0.0.1:{}", testkit::free_tcp_port());
    let config = dir.join("provisiond.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"store\"\n[nbd]\nlisten = \"{addr}\"\n[api]\nlisten = \"{api}\"\n\
             [sessions]\nwrite_cache = \"{cache}\"\n"
        ),
    )
    .unwrap();
    let server = ChildGuard::spawn(
        Command::new(sibling_binary("provisiond"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn"),
    );
    wait(addr);
    // Each device boots (what its DHCP exchange does): its export carries the token.
    let exports = (0..clients)
        .map(|n| {
            let reset = testkit::run(Command::new(sibling_binary("provision")).args([
                "--api",
                &format!("http://{api}"),
                "--json",
                "sessions",
                "reset",
                &format!("seat-{n}"),
            ]));
            let reset: serde_json::Value = serde_json::from_str(&reset).expect("a reset");
            format!(
                "{}/os/{}",
                mac(n),
                reset["token"].as_str().expect("a token")
            )
        })
        .collect();
    let outcome = runtime.block_on(storm(addr, exports, size, server.id()));
    drop(server);
    print(
        &format!("provisiond (standard mode, {cache} write caches)"),
        clients,
        &outcome,
    );
    outcome
}

/// Time and CPU of each of our storms against a peer's.
fn compare(ours: &[(&str, Outcome)], peer: &str, theirs: &Outcome) {
    for (cache, ours) in ours {
        report(
            &format!("aggregate storm time vs {peer}, {cache} write caches"),
            ours.elapsed,
            peer,
            theirs.elapsed,
        );
        report_cpu("  server CPU for the storm", ours.cpu, peer, theirs.cpu);
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
