//! Our client (`tftp::download`, `tftp::upload`) against real servers: tftpd-hpa and
//! dnsmasq's TFTP, with and without options; files byte-identical.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{file_set, pattern, rollover_file};
use tftp::{MemorySource, Options, TransferConfig};

fn wait_ready(addr: SocketAddr) -> bool {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 600];
    while start.elapsed() < Duration::from_secs(10) {
        let _ = probe.send_to(b"\x00\x01.probe-missing\x00octet\x00", addr);
        if probe.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

fn option_sets() -> Vec<Options> {
    vec![
        Options::default(),
        Options {
            blksize: Some(1468),
            tsize: Some(0),
            ..Options::default()
        },
        // Servers that ignore windowsize leave it out of the OACK: lockstep.
        Options {
            blksize: Some(1432),
            windowsize: Some(16),
            tsize: Some(0),
            ..Options::default()
        },
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn our_client_against_tftpd_hpa() {
    let Some(tftpd) = testkit::peer("in.tftpd") else {
        return;
    };
    if !testkit::is_root() {
        eprintln!("SKIPPED: tftpd-hpa needs root for its chroot (-s)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut files = file_set(root.path());
    files.push(rollover_file(root.path()));
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rwX")
        .arg(root.path())
        .status();
    let port = testkit::free_udp_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let _server = testkit::ChildGuard::spawn(
        Command::new(tftpd)
            .args(["-L", "-u", "root", "-c", "-p", "-s"])
            .arg(root.path())
            .args(["-a", &format!("127.0.0.1:{port}")]),
    );
    assert!(wait_ready(addr), "tftpd-hpa did not answer");
    let rt = runtime();
    let config = TransferConfig::default();
    for options in option_sets() {
        for (name, data) in &files {
            if name == "rollover" && options.blksize.is_some() {
                continue; // the roll-over case is for blksize 512
            }
            let got = rt
                .block_on(tftp::download(addr, name, options, &config))
                .unwrap();
            assert!(got == *data, "{name} with {options:?}: {} bytes", got.len());
        }
    }
    let missing = rt.block_on(tftp::download(addr, "missing", Options::default(), &config));
    assert!(
        matches!(
            missing,
            Err(tftp::Error::Peer {
                code: tftp::ErrorCode::FileNotFound,
                ..
            })
        ),
        "{missing:?}"
    );
    // Upload with options; tftpd-hpa creates the file (-c).
    let up = pattern(200_000, 3);
    let source = Arc::new(MemorySource::from(up.clone()));
    let options = Options {
        blksize: Some(1468),
        tsize: Some(0),
        ..Options::default()
    };
    rt.block_on(tftp::upload(addr, "uploaded", source, options, &config))
        .unwrap();
    assert!(std::fs::read(root.path().join("uploaded")).unwrap() == up);
}

#[test]
fn our_client_against_dnsmasq() {
    let Some(dnsmasq) = testkit::peer("dnsmasq") else {
        return;
    };
    if !testkit::is_root() {
        eprintln!("SKIPPED: dnsmasq's TFTP port is 69, which needs root");
        return;
    }
    // dnsmasq 2.90 cannot move its TFTP port off 69: give it its own loopback address.
    let ip = "127.0.0.70";
    if UdpSocket::bind((ip, 69)).is_err() {
        eprintln!("SKIPPED: {ip}:69 is in use");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let files = file_set(root.path());
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(root.path())
        .status();
    let _server = testkit::ChildGuard::spawn(
        Command::new(dnsmasq)
            .args([
                "-d",
                "-C",
                "/dev/null",
                "-p",
                "0",
                "--enable-tftp",
                "-u",
                "root",
            ])
            .arg(format!("--tftp-root={}", root.path().display()))
            .args([&format!("--listen-address={ip}"), "--bind-interfaces"]),
    );
    let addr: SocketAddr = (ip.parse::<std::net::IpAddr>().unwrap(), 69).into();
    assert!(wait_ready(addr), "dnsmasq did not answer");
    let rt = runtime();
    for options in option_sets() {
        for (name, data) in &files {
            let got = rt
                .block_on(tftp::download(
                    addr,
                    name,
                    options,
                    &TransferConfig::default(),
                ))
                .unwrap();
            assert!(got == *data, "{name} with {options:?}: {} bytes", got.len());
        }
    }
}
