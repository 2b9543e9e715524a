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
    download_all_from(ServerConfig::default(), client, rollover, make);
}

/// [`download_all`] from a server configured with `config`.
fn download_all_from(
    config: ServerConfig,
    client: &str,
    rollover: bool,
    make: impl Fn(u16, &str, &Path) -> Command,
) {
    if testkit::peer(client).is_none() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut files = file_set(root.path());
    if rollover {
        files.push(rollover_file(root.path()));
    }
    let server = serve_dir(root.path(), config);
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

/// A server that grants at most 1468-byte blocks (a LAN's MTU minus 32).
fn limited_to_1468() -> ServerConfig {
    ServerConfig {
        transfer: tftp::TransferConfig {
            limits: tftp::Limits {
                max_blksize: 1468,
                ..tftp::Limits::default()
            },
            ..tftp::TransferConfig::default()
        },
        ..ServerConfig::default()
    }
}

#[test]
fn curl_largest_blksize_is_lowered_not_refused() {
    // 65464 is within RFC 2348: the server answers 1468 in its OACK and curl follows.
    download_all_from(limited_to_1468(), "curl", false, |port, name, out| {
        curl(port, name, out, Some(65464))
    });
}

#[test]
fn atftp_largest_blksize_and_windowsize_are_lowered_not_refused() {
    download_all_from(limited_to_1468(), "atftp", false, |port, name, out| {
        atftp(
            port,
            name,
            out,
            &[
                "blksize 65464",
                "tsize 0",
                "windowsize 65535",
                "timeout 255",
            ],
        )
    });
}

#[test]
fn atftp_asking_out_of_range_values_gets_error_8() {
    // atftp sends whatever it is given (curl and busybox refuse such values themselves),
    // so it shows what a client sees: ERROR 8 with the option, value and range.
    let atftp_bin = testkit::require_peer!("atftp");
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), b"hello").unwrap();
    let server = serve_dir(root.path(), ServerConfig::default());
    let port = server.addr.port();
    let out = root.path().join("out");
    for (option, message) in [
        ("blksize 4", "option blksize: 4 is out of range 8-65464"),
        (
            "blksize 70000",
            "option blksize: 70000 is out of range 8-65464",
        ),
        ("timeout 0", "option timeout: 0 is out of range 1-255"),
        ("timeout 300", "option timeout: 300 is out of range 1-255"),
        (
            "windowsize 0",
            "option windowsize: 0 is out of range 1-65535",
        ),
        (
            "windowsize 65536",
            "option windowsize: 65536 is out of range 1-65535",
        ),
        (
            "tsize abc",
            "option tsize: \"abc\" is not a number (a size in bytes)",
        ),
    ] {
        let got = testkit::run_output(
            atftp(port, "f", &out, &[option]).arg("--trace"),
            testkit::DEFAULT_TIMEOUT,
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&got.stderr)
        );
        assert!(!got.status.success(), "atftp --option '{option}': {text}");
        assert!(
            text.contains(&format!("error received from server <{message}>")),
            "atftp --option '{option}': {text}"
        );
        assert!(
            std::fs::read(&out).unwrap_or_default().is_empty(),
            "no data for a refused request"
        );
    }
    // The same client asking within range is served.
    testkit::run(
        Command::new(&atftp_bin)
            .args(["--option", "blksize 8", "-g", "-r", "f", "-l"])
            .arg(&out)
            .args(["127.0.0.1", &port.to_string()]),
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"hello");
}
