//! A client that opens 1,000 connections and stalls them mid-handshake does not
//! exhaust nbd-serve's memory, and a fresh client is still served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use testkit::ChildGuard;

const BIN: &str = env!("CARGO_BIN_EXE_nbd-serve");

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn thousand_stalled_handshakes_stay_bounded() {
    let nbdinfo = testkit::require_peer!("nbdinfo");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, vec![1u8; 1 << 20]).unwrap();
    let port = testkit::free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let server = ChildGuard::spawn(
        Command::new(BIN)
            .arg(&raw)
            .args(["--listen", &listen, "--name", "disk"]),
    );
    testkit::wait_for_tcp(listen.parse().unwrap(), Duration::from_secs(20));
    let before = rss_kib(server.id());

    let mut stalled = Vec::with_capacity(1000);
    for i in 0..1000 {
        let mut s = TcpStream::connect(&listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut greeting = [0; 18];
        s.read_exact(&mut greeting).unwrap();
        // Client flags, then half of an option header, then nothing.
        let stall: &[u8] = if i % 2 == 0 {
            &[0, 0, 0, 1, b'I', b'H', b'A', b'V']
        } else {
            &[0, 0]
        };
        s.write_all(stall).unwrap();
        stalled.push(s);
    }
    // Every stalled connection got its greeting, so the server holds all 1,000 now.
    let out =
        testkit::run(Command::new(&nbdinfo).args(["--size", &format!("nbd://{listen}/disk")]));
    assert_eq!(out.trim(), "1048576");
    let during = rss_kib(server.id());
    eprintln!("nbd-serve RSS: {before} KiB idle, {during} KiB with 1,000 stalled handshakes");
    assert!(
        during < 64 * 1024,
        "RSS {during} KiB with 1,000 stalled clients"
    );
    drop(stalled);
}
