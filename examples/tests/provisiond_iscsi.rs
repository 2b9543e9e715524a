//! provisiond's `[iscsi]` service against real initiators (libiscsi's `iscsi-ls`,
//! `iscsi-inq`, `iscsi-perf`; qemu's iSCSI driver through `qemu-img` and `qemu-io`),
//! on vDisk sessions: the initiator name carries the device's MAC, the target name the
//! vDisk, the CHAP secret the boot (see `provision_core::adapters::iscsi`).
//!
//! - `sessions_over_iscsi`: the right bytes; writes land in the device's write cache
//!   (the base file does not change) and survive a reconnect of the same boot; a second
//!   device sees the vDisk unchanged; the session shows `transport: iscsi` in the API
//!   and metrics; a new boot closes the old boot's connection (iscsi-perf's reads end),
//!   drops its cache, and the old secret opens nothing; wrong secret, unknown
//!   initiator, unassigned vDisk, disabled device are refused at login, each with the
//!   status the log names.

mod e2e;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::{Provisiond, WorkDir, provision};
use provision_core::Mac;
use provision_core::adapters::iscsi::{chap_secret, initiator_name, target_name};

const DEV_A: &str = "52:54:00:15:c5:01";
const DEV_B: &str = "52:54:00:15:c5:02";
const DEV_C: &str = "52:54:00:15:c5:03";
const DEV_D: &str = "52:54:00:15:c5:04";
const SIZE: usize = 16 << 20;

/// How one initiator logs in: its name, CHAP name and secret.
struct Login {
    initiator: String,
    secret: String,
}

impl Login {
    fn of(mac: &str, token: &str) -> Login {
        let mac: Mac = mac.parse().unwrap();
        Login {
            initiator: initiator_name(mac),
            secret: chap_secret(&token.parse().unwrap()),
        }
    }

    /// A libiscsi URL of LUN 0 of `target` (or the portal alone).
    fn url(&self, portal: &str, target: Option<&str>) -> String {
        match target {
            Some(t) => format!("iscsi://device%{}@{portal}/{t}/0", self.secret),
            None => format!("iscsi://device%{}@{portal}", self.secret),
        }
    }

    /// qemu's `--image-opts` for LUN 0 of `target`.
    fn image_opts(&self, portal: &str, target: &str) -> String {
        format!(
            "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal={portal},\
             file.target={target},file.lun=0,file.initiator-name={},file.user=device,\
             file.password={}",
            self.initiator, self.secret
        )
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 512) as u8) ^ (i % 251) as u8)
        .collect()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs a command bounded by 60 s; returns its output whatever its status.
fn attempt(cmd: &mut Command) -> Output {
    testkit::run_output(cmd, Duration::from_secs(60))
}

/// `qemu-io` commands on the LUN, asserting success (`read -P` fails on a mismatch).
fn run_qemu_io(qemu_io: &Path, opts: &str, commands: &[&str], server: &Provisiond) {
    let mut cmd = Command::new(qemu_io);
    cmd.arg("--image-opts");
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = attempt(cmd.arg(opts));
    let said = text(&out);
    assert!(
        out.status.success() && !said.contains("Pattern verification failed"),
        "qemu-io {commands:?}: {said}\n{}",
        server.log_tail(40)
    );
}

/// Waits (at most 30 s) until the server's log contains `needle`.
fn wait_for_log(server: &Provisiond, needle: &str) {
    let start = Instant::now();
    while !server.log().contains(needle) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "`{needle}` not in the log after 30 s\n{}",
            server.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new boot of `name`: its token.
fn new_boot_token(server: &Provisiond, name: &str) -> String {
    let reset = server.cli_json(&["sessions", "reset", name]);
    reset["token"]
        .as_str()
        .unwrap_or_else(|| panic!("sessions reset {name}: {reset}"))
        .to_owned()
}

#[test]
fn sessions_over_iscsi() {
    let ls = testkit::require_peer!("iscsi-ls");
    let inq = testkit::require_peer!("iscsi-inq");
    let perf = testkit::require_peer!("iscsi-perf");
    let qemu_img = testkit::require_peer!("qemu-img");
    let qemu_io = testkit::require_peer!("qemu-io");
    let work = WorkDir::new("provisiond-iscsi");
    let dir = work.path();
    let store_dir = Provisiond::store_of(dir);
    let store = ["--store", store_dir.to_str().unwrap()];
    let raw = dir.join("os.raw");
    std::fs::write(&raw, pattern(SIZE)).unwrap();
    let vhd = dir.join("os.vhd");
    e2e::convert_to_dynamic_vhd(&raw, &vhd);
    provision(&store, &["vdisk", "import", "os", vhd.to_str().unwrap()]);
    provision(&store, &["vdisk", "import", "other", vhd.to_str().unwrap()]);
    for (mac, name) in [
        (DEV_A, "dev-a"),
        (DEV_B, "dev-b"),
        (DEV_C, "dev-c"),
        (DEV_D, "dev-d"),
    ] {
        provision(&store, &["device", "add", mac, name]);
    }
    provision(&store, &["assign", "dev-a", "os"]);
    provision(&store, &["assign", "dev-b", "os"]);
    provision(&store, &["assign", "dev-c", "other"]);
    provision(&store, &["assign", "dev-d", "os"]);

    let port = testkit::free_tcp_port();
    let portal = format!("127.0.0.1:{port}");
    let server = Provisiond::start(
        dir,
        &format!(
            "[sessions]\ngrace_seconds = 3600\n[iscsi]\nenabled = true\nlisten = \"{portal}\"\n"
        ),
    );
    testkit::wait_for_tcp(portal.parse().unwrap(), Duration::from_secs(20));
    let base = store_dir.join("os").join("v0.vhd");
    let base_before = std::fs::read(&base).unwrap();
    let iqn = target_name("os");

    eprintln!("step 1: discovery, inquiry and the bytes of dev-a's session");
    let a = Login::of(DEV_A, &new_boot_token(&server, "dev-a"));
    let out = testkit::run(
        Command::new(&ls)
            .args(["-i", &a.initiator, "-s"])
            .arg(a.url(&portal, None)),
    );
    assert!(out.contains(&format!("Target:{iqn} Portal:")), "{out}");
    assert!(
        out.contains("Lun:0") && out.contains("DIRECT_ACCESS"),
        "{out}"
    );
    assert!(!out.contains(&target_name("other")), "{out}");
    let out = testkit::run(
        Command::new(&inq)
            .args(["-i", &a.initiator])
            .arg(a.url(&portal, Some(&iqn))),
    );
    assert!(
        out.contains("Peripheral Device Type:DIRECT_ACCESS"),
        "{out}"
    );
    testkit::run(
        Command::new(&qemu_img)
            .args(["compare", "--image-opts"])
            .arg(format!("driver=raw,file.filename={}", raw.display()))
            .arg(a.image_opts(&portal, &iqn)),
    );

    eprintln!("step 2: dev-a writes; its cache holds it across a reconnect; the base does not");
    let opts_a = a.image_opts(&portal, &iqn);
    run_qemu_io(
        &qemu_io,
        &opts_a,
        &["write -P 0x77 4096 1M", "flush"],
        &server,
    );
    run_qemu_io(&qemu_io, &opts_a, &["read -P 0x77 4096 1M"], &server);
    assert_eq!(
        std::fs::read(&base).unwrap(),
        base_before,
        "the base changed"
    );
    let metrics = server.metrics();
    assert!(
        metrics.device("provision_device_write_bytes_total", DEV_A) >= 1 << 20,
        "{}",
        metrics.0
    );

    eprintln!("step 3: dev-b sees the vDisk as it is, not dev-a's writes");
    let b = Login::of(DEV_B, &new_boot_token(&server, "dev-b"));
    testkit::run(
        Command::new(&qemu_img)
            .args(["compare", "--image-opts"])
            .arg(format!("driver=raw,file.filename={}", raw.display()))
            .arg(b.image_opts(&portal, &iqn)),
    );

    eprintln!("step 4: a running session shows as iscsi; a new boot ends it and its cache");
    let mut reader = testkit::ChildGuard::spawn(
        Command::new(&perf)
            .args(["-i", &a.initiator, "-m", "4", "-b", "8", "-x", "0"])
            .arg(a.url(&portal, Some(&iqn)))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let start = Instant::now();
    loop {
        let sessions = server.cli_json(&["sessions", "list"]);
        let open = sessions.as_array().and_then(|list| {
            list.iter()
                .find(|s| s["device"] == "dev-a" && s["vdisk"] == "os")
                .cloned()
        });
        if let Some(s) = open {
            assert_eq!(s["transport"], "iscsi", "{sessions}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no iscsi session of dev-a while iscsi-perf reads: {sessions}\n{}",
            server.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = server.metrics();
    assert_eq!(
        metrics.value("provision_sessions_by_transport{transport=\"iscsi\"}"),
        Some(1),
        "{}",
        metrics.0
    );
    let old = a;
    let a = Login::of(DEV_A, &new_boot_token(&server, "dev-a"));
    // The server closed iscsi-perf's connection; it may not log in again (-x 0) and
    // its old secret opens nothing: it ends.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = reader.child().try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "iscsi-perf still reads 30 s after its device booted again\n{}",
            server.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "iscsi-perf ended with {status}");
    wait_for_log(&server, "session ended by the device's new boot");
    // The new boot's session starts from the vDisk: the old cache is gone.
    let opts_a = a.image_opts(&portal, &iqn);
    let original = format!("driver=raw,file.filename={}", raw.display());
    testkit::run(
        Command::new(&qemu_img)
            .args(["compare", "--image-opts", &original])
            .arg(&opts_a),
    );
    let out = attempt(
        Command::new(&inq)
            .args(["-i", &old.initiator])
            .arg(old.url(&portal, Some(&iqn))),
    );
    assert!(
        !out.status.success(),
        "the old boot's secret logged in: {}",
        text(&out)
    );
    wait_for_log(&server, "login status 0201");

    eprintln!("step 5: refusals at login");
    let log_lines = |needle: &str| server.log().matches(needle).count();
    let refused = |what: &str, cmd: &mut Command, status: &str| {
        let before = log_lines(status);
        let out = attempt(cmd);
        assert!(!out.status.success(), "{what}: logged in\n{}", text(&out));
        let start = Instant::now();
        while log_lines(status) == before {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: no `{status}` in the log\n{}",
                server.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let wrong = Login {
        initiator: a.initiator.clone(),
        secret: "0123456789abcdef".into(),
    };
    refused(
        "a wrong CHAP secret",
        Command::new(&inq)
            .args(["-i", &wrong.initiator])
            .arg(wrong.url(&portal, Some(&iqn))),
        "login status 0201",
    );
    refused(
        "an initiator name without a MAC",
        Command::new(&inq)
            .args(["-i", "iqn.1993-08.org.debian:01:stranger"])
            .arg(a.url(&portal, Some(&iqn))),
        "names no device",
    );
    let unknown = Login::of("52:54:00:15:c5:99", "00112233445566778899aabbccddeeff");
    refused(
        "an unknown device",
        Command::new(&inq)
            .args(["-i", &unknown.initiator])
            .arg(unknown.url(&portal, Some(&iqn))),
        "login status 0201",
    );
    let c = Login::of(DEV_C, &new_boot_token(&server, "dev-c"));
    refused(
        "a vDisk not assigned to the device",
        Command::new(&inq)
            .args(["-i", &c.initiator])
            .arg(c.url(&portal, Some(&iqn))),
        "login status 0203",
    );
    let d = Login::of(DEV_D, &new_boot_token(&server, "dev-d"));
    server.cli(&["device", "set", "dev-d", "--disable"]);
    refused(
        "a disabled device",
        Command::new(&inq)
            .args(["-i", &d.initiator])
            .arg(d.url(&portal, Some(&iqn))),
        "login status 0202",
    );
    // dev-a is still served after all that.
    testkit::run(
        Command::new(&qemu_img)
            .args(["compare", "--image-opts", &original])
            .arg(&opts_a),
    );
    assert_eq!(
        std::fs::read(&base).unwrap(),
        base_before,
        "the base changed"
    );
}
