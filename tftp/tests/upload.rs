//! Uploads (WRQ) from real clients: tftp-hpa `put`, curl `-T`, atftp and busybox `-p`,
//! in octet mode (and netascii for tftp-hpa); uploads are atomic and off by default.

mod common;

use std::process::Command;

use common::{pattern, serve_dir};
use tftp::ServerConfig;

fn upload_with(client: &str, make: impl Fn(u16, &std::path::Path, &str) -> Command) {
    if testkit::peer(client).is_none() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let server = serve_dir(
        root.path(),
        ServerConfig {
            allow_write: true,
            ..ServerConfig::default()
        },
    );
    for (i, len) in [0usize, 1, 512, 513, 100_000, 3 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(len, 40 + i as u64);
        let local = src.path().join(format!("in{i}"));
        std::fs::write(&local, &data).unwrap();
        let remote = format!("up{i}");
        testkit::run(&mut make(server.addr.port(), &local, &remote));
        let got = std::fs::read(root.path().join(&remote)).unwrap();
        assert!(
            got == data,
            "{client} put {len} bytes: got {} bytes",
            got.len()
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn tftp_hpa_put() {
    upload_with("tftp", |port, local, remote| {
        let mut c = Command::new("tftp");
        c.args(["-m", "binary", "127.0.0.1", &port.to_string(), "-c", "put"])
            .arg(local)
            .arg(remote);
        c
    });
}

#[test]
fn curl_upload() {
    upload_with("curl", |port, local, remote| {
        let mut c = Command::new("curl");
        c.arg("-sS")
            .arg("-T")
            .arg(local)
            .arg(format!("tftp://127.0.0.1:{port}/{remote}"));
        c
    });
}

#[test]
fn atftp_put_with_options() {
    upload_with("atftp", |port, local, remote| {
        let mut c = Command::new("atftp");
        c.args([
            "--option",
            "blksize 1468",
            "--option",
            "tsize 0",
            "-p",
            "-l",
        ])
        .arg(local)
        .args(["-r", remote, "127.0.0.1", &port.to_string()]);
        c
    });
}

#[test]
fn busybox_put() {
    upload_with("busybox", |port, local, remote| {
        let mut c = Command::new("busybox");
        c.args(["tftp", "-p", "-l"]).arg(local).args([
            "-r",
            remote,
            "-b",
            "1024",
            "127.0.0.1",
            &port.to_string(),
        ]);
        c
    });
}

#[test]
fn tftp_hpa_netascii_round_trip() {
    let Some(tftp) = testkit::peer("tftp") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let server = serve_dir(
        root.path(),
        ServerConfig {
            allow_write: true,
            ..ServerConfig::default()
        },
    );
    let text = b"#!ipxe\nkernel vmlinuz\r\ninitrd initrd.img\nboot\n".repeat(40);
    std::fs::write(src.path().join("t"), &text).unwrap();
    let port = server.addr.port().to_string();
    testkit::run(
        Command::new(&tftp)
            .args(["-m", "ascii", "127.0.0.1", &port, "-c", "put"])
            .arg(src.path().join("t"))
            .arg("t"),
    );
    assert_eq!(std::fs::read(root.path().join("t")).unwrap(), text);
    testkit::run(
        Command::new(&tftp)
            .args(["-m", "ascii", "127.0.0.1", &port, "-c", "get", "t"])
            .arg(src.path().join("back")),
    );
    assert_eq!(std::fs::read(src.path().join("back")).unwrap(), text);
}

#[test]
fn uploads_are_refused_by_default() {
    let Some(tftp) = testkit::peer("tftp") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("x"), b"x").unwrap();
    let server = serve_dir(root.path(), ServerConfig::default());
    let out = testkit::run_output(
        Command::new(tftp)
            .args([
                "-m",
                "binary",
                "127.0.0.1",
                &server.addr.port().to_string(),
                "-c",
                "put",
            ])
            .arg(src.path().join("x"))
            .arg("x"),
        testkit::DEFAULT_TIMEOUT,
    );
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("Uploads are not allowed"),
        "tftp said: {said}"
    );
    assert!(!root.path().join("x").exists());
}
