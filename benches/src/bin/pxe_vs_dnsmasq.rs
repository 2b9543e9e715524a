//! ProxyDHCP offers per second: `pxe-serve` against dnsmasq in proxy mode, same traffic
//! from perfdhcp (Debian package kea-admin), in network namespaces this program creates
//! and deletes (root only; 10.77.0.x addresses only inside them).
//!
//! Run: `cargo build --release -p provision-examples --bin pxe-serve &&
//!       cargo run --release -p provision-benches --bin pxe_vs_dnsmasq [-- RATE SECONDS]`
//! (RATE: DISCOVERs per second perfdhcp tries, default 20000; SECONDS default 5.)

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use testkit::ChildGuard;

struct Lab {
    server: String,
    client: String,
}

fn ip(args: &[&str]) {
    testkit::run(Command::new("ip").args(args));
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            server: format!("pxbench{pid}s"),
            client: format!("pxbench{pid}c"),
        };
        for ns in [&lab.server, &lab.client] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let s = lab.server.as_str();
        let c = lab.client.as_str();
        ip(&[
            "-n",
            s,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        ip(&["-n", s, "addr", "add", "10.77.0.1/24", "dev", "br0"]);
        ip(&["-n", s, "link", "set", "br0", "up"]);
        ip(&[
            "link", "add", "vethc", "netns", c, "type", "veth", "peer", "name", "pc", "netns", s,
        ]);
        ip(&["-n", s, "link", "set", "pc", "master", "br0", "up"]);
        ip(&["-n", c, "addr", "add", "10.77.0.200/24", "dev", "vethc"]);
        ip(&["-n", c, "link", "set", "vethc", "up"]);
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs perfdhcp (DISCOVER/OFFER only, PXE options 60 and 93) and returns offers/s.
fn offers_per_second(lab: &Lab, perfdhcp: &PathBuf, rate: u32, seconds: u32) -> f64 {
    let vendor: String = b"PXEClient:Arch:00000:UNDI:002001"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = testkit::run_output(
        Command::new("ip")
            .args(["netns", "exec", &lab.client])
            .arg(perfdhcp)
            .args([
                "-4",
                "-l",
                "vethc",
                "-i",
                "-r",
                &rate.to_string(),
                "-R",
                "10000",
                "-p",
                &seconds.to_string(),
                "-o",
                &format!("60,{vendor}"),
                "-o",
                "93,0000",
            ]),
        Duration::from_secs(u64::from(seconds) + 60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let received: f64 = text
        .split("***Statistics for: DISCOVER-OFFER***")
        .nth(1)
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.trim().strip_prefix("received packets:"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "cannot read perfdhcp's output:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    received / f64::from(seconds)
}

fn main() {
    if !testkit::is_root() {
        eprintln!("pxe_vs_dnsmasq needs root (network namespaces)");
        std::process::exit(2);
    }
    let args: Vec<String> = std::env::args().collect();
    let rate: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let seconds: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let (Some(perfdhcp), Some(dnsmasq)) = (testkit::peer("perfdhcp"), testkit::peer("dnsmasq"))
    else {
        std::process::exit(2);
    };
    let ours = std::env::current_exe().unwrap().with_file_name("pxe-serve");
    if !ours.exists() {
        eprintln!(
            "{} not found: build it first (cargo build --release -p provision-examples --bin pxe-serve)",
            ours.display()
        );
        std::process::exit(2);
    }
    let lab = Lab::new();

    let server = ChildGuard::spawn(
        Command::new("ip")
            .args(["netns", "exec", &lab.server])
            .arg(&ours)
            .args([
                "-i",
                "br0",
                "--server-ip",
                "10.77.0.1",
                "--boot-file",
                "bios=undionly.kpxe",
                "--no-rival-watch",
            ])
            .env("RUST_LOG", "warn"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let ours_rate = offers_per_second(&lab, &perfdhcp, rate, seconds);
    drop(server);

    let peer = ChildGuard::spawn(
        Command::new("ip")
            .args(["netns", "exec", &lab.server])
            .arg(&dnsmasq)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--user=root",
                "--interface=br0",
                "--bind-interfaces",
                "--dhcp-range=10.77.0.0,proxy,255.255.255.0",
                "--pxe-service=x86PC,Boot,undionly",
                "--leasefile-ro",
                "--quiet-dhcp",
                "--log-facility=/dev/null",
            ]),
    );
    std::thread::sleep(Duration::from_millis(500));
    let peer_rate = offers_per_second(&lab, &perfdhcp, rate, seconds);
    drop(peer);

    println!(
        "perfdhcp DISCOVER/OFFER at up to {rate}/s for {seconds} s: pxe-serve {ours_rate:.0} offers/s, dnsmasq {peer_rate:.0} offers/s"
    );
    let per_offer = |r: f64| Duration::from_secs_f64(1.0 / r.max(1e-9));
    provision_benches::report(
        "proxy offers (time per offer)",
        per_offer(ours_rate),
        "dnsmasq",
        per_offer(peer_rate),
    );
}
