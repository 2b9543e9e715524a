//! Real TFTP clients (curl, tftp-hpa, atftp, busybox) download from our server on
//! loopback; every file must arrive byte-identical.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_same, file_set, rollover_file, serve_dir};
use tftp::ServerConfig;

fn curl(port: u16, name: &str, out: &Path, blksize: Option<u16>) -> Command {
    let mut c = Command::new("curl");
    c.arg("-sS").arg("--max-time").arg("100");
    if let Some(b) = blksize {
        c.args(["--tftp-blksize", &b.to_string()]);
    }
    c.arg(format!("tftp://127.0.0.1:{port}/{name}"))
        .arg("-o")
        .arg(out);
    c
}

/// Runs `client` for every file (and the roll-over file when `rollover`).
fn download_all(client: &str, rollover: bool, make: impl Fn(u16, &str, &Path) -> Command) {
    if testkit::peer(client).is_none() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut files = file_set(root.path());
    if rollover {
        files.push(rollover_file(root.path()));
    }
    let server = serve_dir(root.path(), ServerConfig::default());
    let out_dir = tempfile::tempdir().unwrap();
    for (name, data) in &files {
        let out = out_dir.path().join(name);
        testkit::run(&mut make(server.addr.port(), name, &out));
        assert_same(&out, data, &format!("{client} get {name}"));
    }
}

#[test]
fn curl_default_blksize() {
    download_all("curl", true, |port, name, out| curl(port, name, out, None));
}

#[test]
fn curl_blksize_1468() {
    download_all("curl", false, |port, name, out| {
        curl(port, name, out, Some(1468))
    });
}

#[test]
fn tftp_hpa() {
    download_all("tftp", true, |port, name, out| {
        let mut c = Command::new("tftp");
        c.args([
            "-m",
            "binary",
            "127.0.0.1",
            &port.to_string(),
            "-c",
            "get",
            name,
        ])
        .arg(out);
        c
    });
}

#[test]
fn tftp_hpa_verbose() {
    download_all("tftp", false, |port, name, out| {
        let mut c = Command::new("tftp");
        c.args([
            "-v",
            "-m",
            "binary",
            "127.0.0.1",
            &port.to_string(),
            "-c",
            "get",
            name,
        ])
        .arg(out);
        c
    });
}

fn atftp(port: u16, name: &str, out: &Path, options: &[&str]) -> Command {
    let mut c = Command::new("atftp");
    for o in options {
        c.args(["--option", o]);
    }
    c.args(["-g", "-r", name, "-l"])
        .arg(out)
        .args(["127.0.0.1", &port.to_string()]);
    c
}

#[test]
fn atftp_blksize_tsize_windowsize() {
    download_all("atftp", false, |port, name, out| {
        atftp(
            port,
            name,
            out,
            &["blksize 1468", "tsize 0", "windowsize 16"],
        )
    });
}

#[test]
fn atftp_rollover_at_blksize_512() {
    download_all("atftp", true, |port, name, out| {
        atftp(port, name, out, &["blksize 512", "tsize 0"])
    });
}

#[test]
fn busybox_blksize_1468() {
    download_all("busybox", false, |port, name, out| {
        let mut c = Command::new("busybox");
        c.args(["tftp", "-g", "-r", name, "-l"]).arg(out).args([
            "-b",
            "1468",
            "127.0.0.1",
            &port.to_string(),
        ]);
        c
    });
}

#[test]
fn busybox_default_rollover() {
    download_all("busybox", true, |port, name, out| {
        let mut c = Command::new("busybox");
        c.args(["tftp", "-g", "-r", name, "-l"])
            .arg(out)
            .args(["127.0.0.1", &port.to_string()]);
        c
    });
}
