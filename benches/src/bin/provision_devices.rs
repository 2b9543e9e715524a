//! 1,000 devices at once through provisiond itself: 1,000 distinct devices in standard
//! mode, each booted through the admin API (its own token), connect within the same
//! second, read a boot working set (every byte they read checked) and write data of
//! their own, which each reads back (a device that saw another's data, or lost its
//! own, is an integrity error). Printed: the time until the last device is done,
//! failed devices (the client never reconnects: a dropped connection is a failure),
//! provisiond's peak resident memory (its high-water mark), beside nbd-server
//! (`copyonwrite = true`, a diff file per client) under the same load.
//!
//! Run: `cargo build --release -p provision-examples --bin provisiond &&
//!       cargo run --release -p provision-benches --bin provision_devices`
//! Environment: `DEVICES` (default 1000), `DEVICES_MIB` (working set, default 16; each
//! device writes 64 KiB per 1 MiB read), `DEVICES_CACHE` (`disk`, the default and
//! durable, or `ram`).

use provision_benches::devices::{raise_open_file_limit, start_provisiond, store_with_devices};
use provision_benches::storm::{Load, NbdServer, Outcome, runtime, storm, working_set};
use provision_benches::{mib_per_s, report};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn print(name: &str, o: &Outcome) {
    println!(
        "{name:<28} last device done after {:>6.2} s ({:>5.0} MiB/s aggregate), server CPU \
         {:>6.2} s, peak RSS {:>8} KiB, {} integrity errors, {} failed devices",
        o.elapsed.as_secs_f64(),
        mib_per_s(o.bytes, o.elapsed),
        o.cpu.as_secs_f64(),
        o.peak_rss_kib,
        o.integrity_errors,
        o.failed_clients,
    );
}

fn main() {
    let devices = env_u64("DEVICES", 1000);
    let size = env_u64("DEVICES_MIB", 16) << 20;
    let cache = std::env::var("DEVICES_CACHE").unwrap_or_else(|_| "disk".into());
    // Our client sockets, and room for nbd-server's diff files.
    raise_open_file_limit(devices * 2 + 64);
    let load = Load {
        size,
        request: 128 << 10,
        queue_depth: 4,
        write_every: 1 << 20,
        write_len: 64 << 10,
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let raw = dir.path().join("working-set.raw");
    std::fs::write(&raw, working_set(size)).expect("writing the working set");
    store_with_devices(dir.path(), &raw, devices);
    let runtime = runtime();
    println!(
        "{devices} devices at once: {} MiB working set each, QD {}, {} KiB reads, {} KiB \
         written per device, {cache} write caches",
        size >> 20,
        load.queue_depth,
        load.request >> 10,
        (size / load.write_every * load.write_len as u64) >> 10,
    );

    let binary = std::env::current_exe()
        .expect("the benchmark's path")
        .with_file_name("provisiond");
    assert!(
        binary.is_file(),
        "build it first: cargo build --release -p provision-examples --bin provisiond"
    );
    let server = start_provisiond(&binary, dir.path(), &cache);
    let ours = server.storm(&runtime, devices, load);
    drop(server);
    print("provisiond (standard mode)", &ours);

    let Some(peer) = NbdServer::start(dir.path(), &raw, devices) else {
        println!("nbd-server not installed (Debian package nbd-server): skipped");
        return;
    };
    let exports = (0..devices).map(|_| "storm".to_owned()).collect();
    let theirs = runtime.block_on(storm(peer.addr, exports, load, peer.pid));
    drop(peer);
    print("nbd-server (copyonwrite)", &theirs);
    report(
        "time to the last device vs nbd-server",
        ours.elapsed,
        "nbd-server",
        theirs.elapsed,
    );
    println!(
        "  peak server RSS: ours {} KiB, nbd-server {} KiB (with its children, sampled)",
        ours.peak_rss_kib, theirs.peak_rss_kib
    );
}
