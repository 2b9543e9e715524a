//! Helpers for the side-by-side benchmarks in `benches/src/bin/`.
//!
//! Every benchmark that has a peer doing the same work (qemu-img, qemu-nbd, nbdkit,
//! tftpd-hpa, dnsmasq) runs ours and the peer in one run and prints the ratio, so
//! figures are comparable on whatever machine runs them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub mod devices;
pub mod storm;

/// Runs `work` `runs` times and returns the best wall-clock time (the least disturbed
/// by other load on the machine).
pub fn best_of(runs: usize, mut work: impl FnMut()) -> Duration {
    (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// The median time of `runs` runs of `work` (at least three), and the range
/// (fastest, slowest): what the README reports.
pub fn median_of(runs: usize, mut work: impl FnMut()) -> (Duration, Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs.max(3))
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

/// Prints one comparison line: `case  ours  peer  ratio` where a ratio above 1 means
/// we are faster.
pub fn report(case: &str, ours: Duration, peer_name: &str, peer: Duration) {
    print_ratio(case, ours, peer_name, peer, "speed ratio", 3);
}

/// Prints one comparison line from rounds run alternately (round `i` timed ours, then the
/// peer): the median time of each side, and the median of the rounds' ratios with
/// their range, `1.23x [1.10-1.31]`, which is what the README reports.
pub fn report_rounds(case: &str, ours: &[Duration], peer_name: &str, peer: &[Duration]) {
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let mut ratios: Vec<f64> = ours
        .iter()
        .zip(peer)
        .filter(|(o, _)| !o.is_zero())
        .map(|(o, p)| p.as_secs_f64() / o.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = match (ratios.first(), ratios.get(ratios.len() / 2), ratios.last()) {
        (Some(lo), Some(mid), Some(hi)) => format!("{mid:>5.2}x [{lo:.2}-{hi:.2}]"),
        _ => "n/a".to_owned(),
    };
    println!(
        "{case:<48} ours {:>9.3} ms  {peer_name} {:>9.3} ms  speed ratio {ratio} ({} rounds)",
        median(ours).as_secs_f64() * 1e3,
        median(peer).as_secs_f64() * 1e3,
        ratios.len(),
    );
}

/// One line `case  ours  peer  ratio`: times in ms with `decimals`, the ratio peer/ours.
fn print_ratio(
    case: &str,
    ours: Duration,
    peer_name: &str,
    peer: Duration,
    kind: &str,
    decimals: usize,
) {
    // A time below what can be measured (CPU ticks are 10 ms) gives no ratio.
    let ratio = if ours.is_zero() {
        "   n/a".to_owned()
    } else {
        format!("{:>6.2}x", peer.as_secs_f64() / ours.as_secs_f64())
    };
    println!(
        "{case:<48} ours {:>9.decimals$} ms  {peer_name} {:>9.decimals$} ms  {kind:<11} {ratio}",
        ours.as_secs_f64() * 1e3,
        peer.as_secs_f64() * 1e3,
    );
}

/// CPU time (user + system, all threads) process `pid` has used so far; zero when
/// it cannot be read.
pub fn cpu_time(pid: u32) -> Duration {
    // /proc/PID/stat: utime and stime are fields 14 and 15, in USER_HZ ticks (100 per
    // second in the Linux user ABI); the command name before them may hold spaces.
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Prints the server CPU time two servers spent on the same work; a ratio above 1
/// means ours used less.
pub fn report_cpu(case: &str, ours: Duration, peer_name: &str, peer: Duration) {
    print_ratio(case, ours, peer_name, peer, "CPU ratio", 0);
}

/// Which TCP congestion control each side's connections use: ours is set by the NBD
/// server's configuration (`ServerConfig::default()`: cubic), the peers take the
/// machine's (`net.ipv4.tcp_congestion_control`).
pub fn congestion_controls() -> String {
    let ours = nbd_proto::driver::server::ServerConfig::default()
        .congestion_control
        .unwrap_or("the system's");
    let system = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("TCP congestion control: ours {ours}, peers {system} (the machine's)")
}

/// Throughput in MiB/s for `bytes` moved in `elapsed`.
pub fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// A binary built beside the benchmark (`provisiond`, `provision`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark's path");
    let path = exe.with_file_name(name);
    assert!(
        path.is_file(),
        "build it first: cargo build --release -p provision-examples --bin {name}"
    );
    path
}
