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
//! - `an_initiator_vanishes_mid_write`: a hand-written initiator logs in with CHAP,
//!   writes 64 KiB (acknowledged), starts a 1 MiB write and drops its connection while
//!   the target's R2T is outstanding; a second one does the same and then goes silent
//!   with its connection open (a powered-off device: no FIN). Another device's session
//!   is served meanwhile; the device's next login (same boot) reads the acknowledged
//!   data and none of the abandoned writes; the device's new boot closes the silent
//!   connection.

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
    // A hypervisor logs dev-b in with the device's attach secret (the API names the
    // initiator and the CHAP secret): it joins dev-b's current boot.
    let attach = server.cli_json(&["device", "attach-secret", "dev-b"]);
    let hypervisor = Login {
        initiator: attach["iscsi_initiator"].as_str().unwrap().to_owned(),
        secret: attach["iscsi_chap_secret"].as_str().unwrap().to_owned(),
    };
    assert_eq!(hypervisor.initiator, b.initiator, "{attach}");
    assert_eq!(
        hypervisor.secret,
        chap_secret(&attach["attach_secret"].as_str().unwrap().parse().unwrap())
    );
    testkit::run(
        Command::new(&qemu_img)
            .args(["compare", "--image-opts", &original])
            .arg(hypervisor.image_opts(&portal, &iqn)),
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

/// A blocking initiator written as PDUs: just what the impolite test needs.
struct RawInitiator {
    stream: std::net::TcpStream,
    input: Vec<u8>,
    cmd_sn: u32,
    exp_stat_sn: u32,
    itt: u32,
}

impl RawInitiator {
    fn connect(portal: &str) -> RawInitiator {
        let stream = std::net::TcpStream::connect(portal).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        RawInitiator {
            stream,
            input: Vec::new(),
            cmd_sn: 1,
            exp_stat_sn: 0,
            itt: 1,
        }
    }

    fn send(&mut self, pdu: iscsi::wire::Pdu) {
        use std::io::Write;
        let bytes = pdu.to_bytes(iscsi::wire::Digests::default()).unwrap();
        self.stream.write_all(&bytes).unwrap();
    }

    fn receive(&mut self) -> iscsi::wire::Pdu {
        use std::io::Read;
        let start = Instant::now();
        loop {
            if let Some((pdu, n)) =
                iscsi::wire::Pdu::parse(&self.input, iscsi::wire::Digests::default(), 1 << 24)
                    .unwrap()
            {
                self.input.drain(..n);
                return pdu;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no PDU");
            let mut buf = [0u8; 16384];
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "the target closed the connection");
            self.input.extend_from_slice(&buf[..n]);
        }
    }

    /// One login request; the response's keys (asserting success).
    fn login_step(
        &mut self,
        csg: u8,
        nsg: u8,
        transit: bool,
        keys: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        use iscsi::wire::{Bhs, LoginRequest, Pdu, text};
        let pairs: Vec<(String, String)> = keys
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let req = LoginRequest {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0, 0, 0x15, 0xc5, 1],
            tsih: 0,
            itt: 0,
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(Pdu::with_data(Bhs::LoginRequest(req), text::emit(&pairs)));
        let pdu = self.receive();
        let Bhs::LoginResponse(resp) = &pdu.bhs else {
            panic!("not a login response: {pdu:?}")
        };
        assert_eq!(
            (resp.status_class, resp.status_detail),
            (0, 0),
            "login refused"
        );
        self.exp_stat_sn = resp.stat_sn.wrapping_add(1);
        text::parse(&pdu.data).unwrap()
    }

    /// Logs in with CHAP (`secret`), InitialR2T=Yes and ImmediateData=No: every write
    /// waits for the target's R2T.
    fn login(&mut self, initiator: &str, target: &str, secret: &str) {
        let keys = self.login_step(
            0,
            1,
            false,
            &[
                ("InitiatorName", initiator),
                ("SessionType", "Normal"),
                ("TargetName", target),
                ("AuthMethod", "CHAP"),
            ],
        );
        assert!(
            keys.contains(&("AuthMethod".into(), "CHAP".into())),
            "{keys:?}"
        );
        let keys = self.login_step(0, 1, false, &[("CHAP_A", "5")]);
        let get = |k: &str| {
            keys.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k} in {keys:?}"))
        };
        let id: u8 = get("CHAP_I").parse().unwrap();
        let c = get("CHAP_C");
        let challenge: Vec<u8> = (2..c.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&c[i..i + 2], 16).unwrap())
            .collect();
        let response = iscsi::digest::md5(&[&[id], secret.as_bytes(), &challenge]);
        let hex: String = response.iter().map(|b| format!("{b:02x}")).collect();
        self.login_step(
            0,
            1,
            true,
            &[("CHAP_N", "device"), ("CHAP_R", &format!("0x{hex}"))],
        );
        self.login_step(
            1,
            3,
            true,
            &[
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("InitialR2T", "Yes"),
                ("ImmediateData", "No"),
                ("MaxRecvDataSegmentLength", "262144"),
            ],
        );
    }

    /// Sends WRITE(10) of `blocks` 512-byte blocks at `lba`; returns its R2T.
    fn start_write(&mut self, lba: u32, blocks: u16) -> iscsi::wire::R2t {
        use iscsi::wire::{Bhs, Pdu, ScsiCommand};
        let mut cdb = [0u8; 16];
        cdb[0] = 0x2a;
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
        self.itt += 1;
        let cmd = ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: true,
            attr: 1,
            lun: 0,
            itt: self.itt,
            expected_len: u32::from(blocks) * 512,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb,
        };
        self.cmd_sn += 1;
        self.send(Pdu::new(Bhs::ScsiCommand(cmd)));
        let pdu = self.receive();
        let Bhs::R2t(r2t) = pdu.bhs else {
            panic!("not an R2T: {pdu:?}")
        };
        r2t
    }

    /// Answers `r2t` with `byte`s, in Data-Out PDUs of 64 KiB; returns the SCSI status.
    fn finish_write(&mut self, r2t: &iscsi::wire::R2t, byte: u8) -> u8 {
        use iscsi::wire::{Bhs, DataOut, Pdu};
        let chunk = 64 * 1024;
        let len = r2t.desired_len as usize;
        for (sn, at) in (0..len).step_by(chunk).enumerate() {
            let n = chunk.min(len - at);
            let out = DataOut {
                final_: at + n == len,
                lun: 0,
                itt: r2t.itt,
                ttt: r2t.ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn: sn as u32,
                buffer_offset: r2t.buffer_offset + at as u32,
            };
            self.send(Pdu::with_data(Bhs::DataOut(out), vec![byte; n]));
        }
        let pdu = self.receive();
        let Bhs::ScsiResponse(resp) = pdu.bhs else {
            panic!("not a SCSI response: {pdu:?}")
        };
        self.exp_stat_sn = resp.stat_sn.wrapping_add(1);
        resp.status
    }
}

#[test]
fn an_initiator_vanishes_mid_write() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let qemu_io = testkit::require_peer!("qemu-io");
    let work = WorkDir::new("provisiond-iscsi-vanish");
    let dir = work.path();
    let store_dir = Provisiond::store_of(dir);
    let store = ["--store", store_dir.to_str().unwrap()];
    let raw = dir.join("os.raw");
    std::fs::write(&raw, pattern(SIZE)).unwrap();
    let vhd = dir.join("os.vhd");
    e2e::convert_to_dynamic_vhd(&raw, &vhd);
    provision(&store, &["vdisk", "import", "os", vhd.to_str().unwrap()]);
    for (mac, name) in [(DEV_A, "dev-a"), (DEV_B, "dev-b")] {
        provision(&store, &["device", "add", mac, name]);
        provision(&store, &["assign", name, "os"]);
    }
    let port = testkit::free_tcp_port();
    let portal = format!("127.0.0.1:{port}");
    let server = Provisiond::start(
        dir,
        &format!(
            "[sessions]\ngrace_seconds = 3600\n[iscsi]\nenabled = true\nlisten = \"{portal}\"\n"
        ),
    );
    testkit::wait_for_tcp(portal.parse().unwrap(), Duration::from_secs(20));
    let iqn = target_name("os");
    let original = format!("driver=raw,file.filename={}", raw.display());
    let a = Login::of(DEV_A, &new_boot_token(&server, "dev-a"));
    let b = Login::of(DEV_B, &new_boot_token(&server, "dev-b"));

    let mut raw_a = RawInitiator::connect(&portal);
    raw_a.login(&a.initiator, &iqn, &a.secret);
    let r2t = raw_a.start_write(2048, 128);
    assert_eq!(r2t.desired_len, 64 * 1024);
    assert_eq!(raw_a.finish_write(&r2t, 0xab), 0, "the 64 KiB write failed");
    // 1 MiB at 8192: the target asks for its data, and the initiator is gone.
    let r2t = raw_a.start_write(8192, 2048);
    assert!(r2t.desired_len > 0);
    drop(raw_a);
    // The same again, but the initiator then says nothing and keeps its connection.
    let mut silent = RawInitiator::connect(&portal);
    silent.login(&a.initiator, &iqn, &a.secret);
    let r2t = silent.start_write(8192, 2048);
    assert!(r2t.desired_len > 0);

    // Another device is served meanwhile.
    testkit::run(
        Command::new(&qemu_img)
            .args(["compare", "--image-opts", &original])
            .arg(b.image_opts(&portal, &iqn)),
    );
    // The device comes back (same boot): the acknowledged write is there, the abandoned
    // one is not.
    let opts_a = a.image_opts(&portal, &iqn);
    run_qemu_io(&qemu_io, &opts_a, &["read -P 0xab 1048576 64k"], &server);
    let start = 8192 * 512;
    let expected = &pattern(SIZE)[start..start + (1 << 20)];
    let out = dir.join("after.raw");
    testkit::run(
        Command::new(&qemu_img)
            .args(["convert", "-O", "raw", "--image-opts", &opts_a])
            .arg(&out),
    );
    let after = std::fs::read(&out).unwrap();
    assert!(
        after[start..start + (1 << 20)] == *expected,
        "the abandoned write reached the disk"
    );
    // The device boots again: the server closes the silent connection.
    new_boot_token(&server, "dev-a");
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        use std::io::Read;
        match silent.stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the silent connection is still open after the device's new boot\n{}",
            server.log_tail(40)
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "closed only by the read timeout"
    );
}

/// A full write cache (the quota) is the SCSI sense DATA PROTECT / SPACE ALLOCATION
/// FAILED WRITE PROTECT (27/07), which qemu's iSCSI driver reports as ENOSPC; what was
/// written before stays readable, and the device is still served. (The quota is
/// checked before each write that needs new blocks, so the write that crosses it
/// lands; the next one is refused.)
#[test]
fn a_full_write_cache_is_space_allocation_failed() {
    let qemu_io = testkit::require_peer!("qemu-io");
    let work = WorkDir::new("provisiond-iscsi-quota");
    let dir = work.path();
    let store_dir = Provisiond::store_of(dir);
    let store = ["--store", store_dir.to_str().unwrap()];
    let raw = dir.join("os.raw");
    std::fs::write(&raw, pattern(SIZE)).unwrap();
    let vhd = dir.join("os.vhd");
    e2e::convert_to_dynamic_vhd(&raw, &vhd);
    provision(&store, &["vdisk", "import", "os", vhd.to_str().unwrap()]);
    provision(&store, &["device", "add", DEV_A, "dev-a"]);
    provision(&store, &["assign", "dev-a", "os"]);
    let port = testkit::free_tcp_port();
    let portal = format!("127.0.0.1:{port}");
    let server = Provisiond::start(
        dir,
        &format!(
            "[sessions]\ncache_quota = \"4M\"\n[iscsi]\nenabled = true\nlisten = \"{portal}\"\n"
        ),
    );
    testkit::wait_for_tcp(portal.parse().unwrap(), Duration::from_secs(20));
    let a = Login::of(DEV_A, &new_boot_token(&server, "dev-a"));
    let opts = a.image_opts(&portal, &target_name("os"));
    run_qemu_io(&qemu_io, &opts, &["write -P 0x5a 0 1M", "flush"], &server);
    let out = attempt(Command::new(&qemu_io).args([
        "--image-opts",
        "-c",
        "write -P 0x6b 4M 4M",
        "-c",
        "write -P 0x6b 10M 2M",
        &opts,
    ]));
    let said = text(&out);
    assert!(
        said.contains("No space left on device"),
        "a write past the quota: {said}\n{}",
        server.log_tail(40)
    );
    run_qemu_io(&qemu_io, &opts, &["read -P 0x5a 0 1M"], &server);
}
