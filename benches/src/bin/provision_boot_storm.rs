//! Boot storm: many devices read the same working set at once, writing a little, each
//! through its own copy-on-write view, every byte they read checked. provisiond
//! (standard-mode sessions) and nbd-serve (`--snapshot`, a throwaway overlay per
//! connection spilling to disk past 1 MiB) beside nbd-server (`copyonwrite = true`,
//! per-connection diff files) and qemu-nbd (`--snapshot`, which shares one overlay among
//! all clients) serving the same data. Each prints its time, CPU, peak resident memory
//! (the process's high-water mark, or sampled every 20 ms with its children), integrity
//! errors, and for nbd-serve the overlay files still open 3 s after every client left.
//!
//! Run: `cargo build --release -p provision-examples --bin provisiond --bin provision \
//!       --bin nbd-serve && cargo run --release -p provision-benches --bin provision_boot_storm`
//! provisiond runs twice: write caches in RAM, and on disk (the default, durable).
//! Environment: `STORM_CLIENTS` (default 100), `STORM_MIB` (working set, default 256;
//! each client writes 64 KiB per 4 MiB read), `STORM_ONLY` (comma-separated: ram, disk,
//! nbd-serve, nbd-server, qemu-nbd; default all), `STORM_SNAPSHOT_RAM_TOTAL` (nbd-serve's
//! RAM for all overlays, default 32M; `1T` is the unbounded sum of 1 MiB per overlay of
//! before).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use provision_benches::devices::{start_provisiond, store_with_devices};
use provision_benches::storm::{
    Load, NbdServer, Outcome, files_left_open, runtime, storm, working_set,
};
use provision_benches::{congestion_controls, mib_per_s, report, report_cpu, sibling_binary};
use testkit::ChildGuard;

const LOAD: Load = Load {
    size: 0,
    request: 128 << 10,
    queue_depth: 4,
    // One 64 KiB write after every 4 MiB read: 4 MiB written per 256 MiB read.
    write_every: 4 << 20,
    write_len: 64 << 10,
};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn print(name: &str, clients: u64, o: &Outcome) {
    println!(
        "{name:<34} {:>8.0} MiB/s aggregate, last client done after {:>6.2} s, server CPU {:>6.2} s, \
         peak RSS {:>7} KiB, RSS {:>7} KiB idle with {clients} clients ({:>5} KiB per idle session), \
         {} integrity errors, {} failed clients",
        mib_per_s(o.bytes, o.elapsed),
        o.elapsed.as_secs_f64(),
        o.cpu.as_secs_f64(),
        o.peak_rss_kib,
        o.idle_rss_kib,
        o.idle_rss_kib.saturating_sub(o.base_rss_kib) / clients.max(1),
        o.integrity_errors,
        o.failed_clients,
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
    std::fs::write(&raw, working_set(size)).expect("writing the working set");
    let load = Load { size, ..LOAD };
    let only = std::env::var("STORM_ONLY").unwrap_or_default();
    let runs = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);

    let store_dir = store_with_devices(dir.path(), &raw, clients);
    let vhd = store_dir.join("os/v0.vhd");
    let runtime = runtime();
    println!(
        "boot storm: {clients} clients, {} MiB working set each, QD {}, {} KiB reads, \
         {} KiB written per client",
        size >> 20,
        load.queue_depth,
        load.request >> 10,
        (size / load.write_every * load.write_len as u64) >> 10,
    );
    println!("{}", congestion_controls());

    // provisiond: standard-mode sessions, one write cache per device, in RAM and on
    // disk (the default: durable, synced on FLUSH).
    let mut ours: Vec<(&str, Outcome)> = ["ram", "disk"]
        .into_iter()
        .filter(|cache| runs(cache))
        .map(|cache| {
            let outcome = ours(&runtime, dir.path(), cache, clients, load);
            (
                if cache == "ram" {
                    "provisiond, RAM caches"
                } else {
                    "provisiond, disk caches"
                },
                outcome,
            )
        })
        .collect();
    if runs("nbd-serve") {
        ours.push((
            "nbd-serve --snapshot",
            nbd_serve(&runtime, dir.path(), &raw, clients, load),
        ));
    }

    // nbd-server with copyonwrite: a diff file per connection.
    if !runs("nbd-server") {
    } else if let Some(peer) = NbdServer::start(dir.path(), &raw, clients) {
        let exports = (0..clients).map(|_| "storm".to_owned()).collect();
        let theirs = runtime.block_on(storm(peer.addr, exports, load, peer.pid));
        drop(peer);
        print("nbd-server (copyonwrite)", clients, &theirs);
        compare(&ours, "nbd-server", &theirs);
    } else {
        println!("nbd-server not installed (Debian package nbd-server): skipped");
    }

    // qemu-nbd --snapshot on the same VHD (one overlay shared by all clients).
    if !runs("qemu-nbd") {
    } else if let Some(qemu_nbd) = testkit::find_program("qemu-nbd") {
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
        let theirs = runtime.block_on(storm(addr, exports, load, peer.id()));
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
    load: Load,
) -> Outcome {
    let server = start_provisiond(&sibling_binary("provisiond"), dir, cache);
    let outcome = server.storm(runtime, clients, load);
    drop(server);
    print(
        &format!("provisiond (standard mode, {cache} write caches)"),
        clients,
        &outcome,
    );
    outcome
}

/// One storm through `nbd-serve --snapshot`: an overlay per connection, 1 MiB of it
/// in RAM, the rest spilled to a folder whose files are watched after the clients left.
fn nbd_serve(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    raw: &Path,
    clients: u64,
    load: Load,
) -> Outcome {
    let addr: SocketAddr = format!("127.0.0.1:{}", testkit::free_tcp_port())
        .parse()
        .unwrap();
    let spill = dir.join("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let server = ChildGuard::spawn(
        Command::new(sibling_binary("nbd-serve"))
            .arg(raw)
            .args(["--listen", &addr.to_string(), "--name", "storm"])
            .args(["--snapshot", "--snapshot-ram", "1M", "--snapshot-ram-total"])
            .arg(std::env::var("STORM_SNAPSHOT_RAM_TOTAL").unwrap_or_else(|_| "32M".into()))
            .arg("--snapshot-dir")
            .arg(&spill)
            .env("RUST_LOG", "warn"),
    );
    wait(addr);
    let exports = (0..clients).map(|_| "storm".to_owned()).collect();
    let outcome = runtime.block_on(storm(addr, exports, load, server.id()));
    let left = files_left_open(server.id(), &spill, Duration::from_secs(3));
    drop(server);
    print("nbd-serve --snapshot (1M RAM each)", clients, &outcome);
    println!(
        "  overlay files nbd-serve still held open 3 s after every client left: {}",
        left.len()
    );
    outcome
}

/// Time, CPU and peak memory of each of our storms against a peer's.
fn compare(ours: &[(&str, Outcome)], peer: &str, theirs: &Outcome) {
    for (name, ours) in ours {
        report(
            &format!("aggregate storm time vs {peer}, {name}"),
            ours.elapsed,
            peer,
            theirs.elapsed,
        );
        report_cpu("  server CPU for the storm", ours.cpu, peer, theirs.cpu);
        println!(
            "  peak server RSS: ours {} KiB, {peer} {} KiB ({:.2}x less)",
            ours.peak_rss_kib,
            theirs.peak_rss_kib,
            theirs.peak_rss_kib as f64 / ours.peak_rss_kib.max(1) as f64
        );
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
