//! `tftp-serve` as a process: serves a directory to curl and atftp, accepts uploads only
//! with --allow-write, runs in single-port mode, logs JSON, and exits 1/2 on bad input.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tftp-serve");

/// Starts tftp-serve on a free loopback port and waits until it answers.
fn start(root: &Path, extra: &[&str]) -> (testkit::ChildGuard, u16) {
    let port = testkit::free_udp_port();
    let guard = testkit::ChildGuard::spawn(
        Command::new(BIN)
            .arg(root)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "json",
            ])
            .args(extra),
    );
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 600];
    loop {
        // A request for a missing file: any answer means the server is up.
        probe
            .send_to(b"\x00\x01.probe-missing\x00octet\x00", ("127.0.0.1", port))
            .unwrap();
        if probe.recv_from(&mut buf).is_ok() {
            return (guard, port);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "tftp-serve did not answer on port {port}"
        );
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn serves_curl_and_atftp_and_logs_json() {
    let Some(curl) = testkit::peer("curl") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let content = data(3_000_000);
    std::fs::write(root.path().join("kernel"), &content).unwrap();
    let (guard, port) = start(root.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    testkit::run(
        Command::new(&curl)
            .args(["-sS", "--tftp-blksize", "1468"])
            .arg(format!("tftp://127.0.0.1:{port}/kernel"))
            .arg("-o")
            .arg(out.path().join("k1")),
    );
    assert!(std::fs::read(out.path().join("k1")).unwrap() == content);
    if let Some(atftp) = testkit::peer("atftp") {
        testkit::run(
            Command::new(atftp)
                .args([
                    "--option",
                    "blksize 1468",
                    "--option",
                    "windowsize 16",
                    "-g",
                    "-r",
                    "kernel",
                    "-l",
                ])
                .arg(out.path().join("k2"))
                .args(["127.0.0.1", &port.to_string()]),
        );
        assert!(std::fs::read(out.path().join("k2")).unwrap() == content);
    }
    // Missing file: curl's TFTP "file not found" exit code is 68.
    let missing = testkit::run_output(
        Command::new(&curl)
            .arg("-sS")
            .arg(format!("tftp://127.0.0.1:{port}/nope"))
            .arg("-o")
            .arg(out.path().join("n")),
        testkit::DEFAULT_TIMEOUT,
    );
    assert_eq!(missing.status.code(), Some(68));
    // Uploads are off by default.
    std::fs::write(out.path().join("up"), b"x").unwrap();
    let put = testkit::run_output(
        Command::new(&curl)
            .arg("-sS")
            .arg("-T")
            .arg(out.path().join("up"))
            .arg(format!("tftp://127.0.0.1:{port}/up")),
        testkit::DEFAULT_TIMEOUT,
    );
    assert!(!put.status.success());
    assert!(!root.path().join("up").exists());
    let stderr = guard.stop();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(stderr.contains("transfer complete"), "{stderr}");
}

#[test]
fn single_port_with_uploads() {
    let Some(curl) = testkit::peer("curl") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (_guard, port) = start(root.path(), &["--single-port", "--allow-write"]);
    let src = tempfile::tempdir().unwrap();
    let content = data(200_000);
    std::fs::write(src.path().join("f"), &content).unwrap();
    testkit::run(
        Command::new(&curl)
            .arg("-sS")
            .arg("-T")
            .arg(src.path().join("f"))
            .arg(format!("tftp://127.0.0.1:{port}/f")),
    );
    assert!(std::fs::read(root.path().join("f")).unwrap() == content);
    testkit::run(
        Command::new(&curl)
            .arg("-sS")
            .arg(format!("tftp://127.0.0.1:{port}/f"))
            .arg("-o")
            .arg(src.path().join("back")),
    );
    assert!(std::fs::read(src.path().join("back")).unwrap() == content);
}

#[test]
fn exit_codes() {
    let usage = testkit::run_output(
        Command::new(BIN).arg("--no-such-flag"),
        testkit::DEFAULT_TIMEOUT,
    );
    assert_eq!(usage.status.code(), Some(2));
    let missing_root = testkit::run_output(
        Command::new(BIN).args(["/nonexistent-provision-root", "--listen", "127.0.0.1:0"]),
        testkit::DEFAULT_TIMEOUT,
    );
    assert_eq!(missing_root.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing_root.stderr).contains("nonexistent-provision-root"));
    let help = testkit::run(Command::new(BIN).arg("--help"));
    for word in [
        "--single-port",
        "--allow-write",
        "--listen",
        "--log-format",
        "confined",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}
