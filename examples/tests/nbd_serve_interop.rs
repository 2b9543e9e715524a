//! `nbd-serve` end to end: a raw file and a dynamic VHD with the same data read the
//! same; --snapshot keeps clients apart and the image unchanged; --read-only refuses
//! writes; usage errors exit with 2.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::ChildGuard;

const BIN: &str = env!("CARGO_BIN_EXE_nbd-serve");

/// Starts nbd-serve on a free loopback port; returns it and the export URI.
fn serve(file: &Path, extra: &[&str]) -> (ChildGuard, String) {
    let port = testkit::free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let child = ChildGuard::spawn(
        Command::new(BIN)
            .arg(file)
            .args(["--listen", &listen, "--name", "disk"])
            .args(extra),
    );
    testkit::wait_for_tcp(listen.parse().unwrap(), Duration::from_secs(20));
    (child, format!("nbd://{listen}/disk"))
}

/// 8 MiB: data in the first and third 2 MiB blocks (a VHD block each), zeroes elsewhere.
fn image_bytes() -> Vec<u8> {
    (0..8usize << 20)
        .map(|i| {
            if (i >> 21) % 2 == 0 {
                (i % 251) as u8 | 1
            } else {
                0
            }
        })
        .collect()
}

/// The test image in `dir`, and an empty folder for snapshot spill files.
fn image_and_spill_folder(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let raw = dir.join("disk.raw");
    std::fs::write(&raw, image_bytes()).unwrap();
    let spill = dir.join("spill");
    std::fs::create_dir(&spill).unwrap();
    (raw, spill)
}

/// nbdsh, with the system's Python (which has the nbd module) first in PATH.
fn nbdsh_command() -> Command {
    let nbdsh = testkit::find_program("nbdsh").expect("nbdsh");
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(nbdsh);
    command.env("PATH", path);
    command
}

fn nbdsh(script: &str) -> String {
    testkit::run(nbdsh_command().args(["-c", script]))
}

#[test]
fn raw_file_is_served_and_written() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let qemu_io = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, image_bytes()).unwrap();
    let (_server, uri) = serve(&raw, &[]);
    testkit::run(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&raw)
            .arg(&uri),
    );
    testkit::run(Command::new(&qemu_io).args([
        "-f",
        "raw",
        "-c",
        "write -P 0x77 1000 3000",
        "-c",
        "flush",
        &uri,
    ]));
    let after = std::fs::read(&raw).unwrap();
    assert!(after[1000..4000].iter().all(|&b| b == 0x77));
    assert_eq!(after[4000], image_bytes()[4000]);
    if testkit::find_program("nbdsh").is_some() {
        // Zeroing a file writes zeroes: a FAST_ZERO request fails at once, unapplied.
        let out = nbdsh(&format!(
            r#"
h = nbd.NBD(); h.connect_uri({uri:?})
assert h.can_fast_zero()
try:
    h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO)
    print("fast zero applied")
except nbd.Error as e:
    print("fast zero refused", e.errno)
"#
        ));
        assert!(out.contains("fast zero refused ENOTSUP"), "{out}");
        assert!(std::fs::read(&raw).unwrap()[1000..4000] == after[1000..4000]);
    }
}

#[test]
fn dynamic_vhd_reads_like_the_raw_file() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let nbdcopy = testkit::require_peer!("nbdcopy");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let data = image_bytes();
    std::fs::write(&raw, &data).unwrap();
    let vhd = dir.path().join("disk.vhd");
    testkit::run(
        Command::new(&qemu_img)
            .args([
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                "subformat=dynamic,force_size=on",
            ])
            .arg(&raw)
            .arg(&vhd),
    );
    let (_a, raw_uri) = serve(&raw, &["--read-only"]);
    let (_b, vhd_uri) = serve(&vhd, &["--read-only"]);
    let out_raw = dir.path().join("from-raw");
    let out_vhd = dir.path().join("from-vhd");
    testkit::run(Command::new(&nbdcopy).arg(&raw_uri).arg(&out_raw));
    testkit::run(Command::new(&nbdcopy).arg(&vhd_uri).arg(&out_vhd));
    let (a, b) = (
        std::fs::read(&out_raw).unwrap(),
        std::fs::read(&out_vhd).unwrap(),
    );
    assert_eq!(a.len(), data.len());
    assert!(
        a == data && b == data,
        "raw and VHD exports differ from the data"
    );
    testkit::run(
        Command::new(&qemu_img).args(["compare", "-f", "raw", "-F", "raw", &raw_uri, &vhd_uri]),
    );
    // Unallocated VHD blocks are holes in base:allocation.
    let map =
        testkit::run(Command::new(&qemu_img).args(["map", "--output=json", "-f", "raw", &vhd_uri]));
    assert!(map.contains("\"zero\": true"), "{map}");
    assert!(map.contains("\"data\": true"), "{map}");
}

#[test]
fn snapshot_connections_are_private_and_the_image_unchanged() {
    testkit::require_peer!("nbdsh");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let data = image_bytes();
    std::fs::write(&raw, &data).unwrap();
    let (_server, uri) = serve(
        &raw,
        &["--snapshot", "--snapshot-dir", dir.path().to_str().unwrap()],
    );
    let out = nbdsh(&format!(
        r#"
a = nbd.NBD(); a.connect_uri({uri:?})
b = nbd.NBD(); b.connect_uri({uri:?})
assert not a.is_read_only() and not a.can_multi_conn()
orig = b.pread(4096, 0)
a.pwrite(b"A" * 4096, 0)
b.pwrite(b"B" * 4096, 8192)
a.flush(); b.flush()
assert a.pread(4096, 0) == b"A" * 4096
assert b.pread(4096, 0) == orig, "b sees a's write"
assert a.pread(4096, 8192) != b"B" * 4096, "a sees b's write"
a.zero(65536, 1 << 20, nbd.CMD_FLAG_FAST_ZERO)
assert a.pread(65536, 1 << 20) == bytes(65536)
c = nbd.NBD(); c.connect_uri({uri:?})
assert c.pread(4096, 0) == orig, "a new connection sees old writes"
print("snapshot ok")
"#
    ));
    assert!(out.contains("snapshot ok"), "{out}");
    assert!(
        std::fs::read(&raw).unwrap() == data,
        "the image file changed"
    );
}

#[test]
fn read_only_refuses_writes() {
    testkit::require_peer!("nbdsh");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, image_bytes()).unwrap();
    let (_server, uri) = serve(&raw, &["--read-only"]);
    let out = nbdsh(&format!(
        r#"
h = nbd.NBD(); h.connect_uri({uri:?})
assert h.is_read_only() and h.can_multi_conn()
h.set_strict_mode(0)
try:
    h.pwrite(b"x", 0)
    print("write succeeded")
except nbd.Error as e:
    print("write failed", e.errno)
"#
    ));
    assert!(out.contains("write failed EPERM"), "{out}");
}

#[test]
fn usage_errors_exit_with_2_and_help_explains() {
    let out = Command::new(BIN).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["/no/such/file", "--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = testkit::run(Command::new(BIN).arg("--help"));
    assert!(
        help.contains("--snapshot") && help.contains("10809") && help.contains("--log-format"),
        "{help}"
    );
}

#[test]
fn snapshot_quota_gives_enospc_and_spills_to_disk() {
    testkit::require_peer!("nbdsh");
    let dir = tempfile::tempdir().unwrap();
    let (raw, spill) = image_and_spill_folder(dir.path());
    let (_server, uri) = serve(
        &raw,
        &[
            "--snapshot",
            "--snapshot-ram",
            "64K",
            "--snapshot-quota",
            "1M",
            "--snapshot-dir",
            spill.to_str().unwrap(),
        ],
    );
    let out = nbdsh(&format!(
        r#"
h = nbd.NBD(); h.connect_uri({uri:?})
h.set_strict_mode(0)
h.pwrite(b"S" * (512 << 10), 0)            # beyond the RAM limit: spills
assert h.pread(512 << 10, 0) == b"S" * (512 << 10)
try:
    h.pwrite(b"T" * (1 << 20), 1 << 20)    # beyond the quota
    print("write succeeded")
except nbd.Error as e:
    print("write failed", e.errno)
assert h.pread(4096, 0) == b"S" * 4096      # the connection goes on
"#
    ));
    assert!(out.contains("write failed ENOSPC"), "{out}");
}

#[test]
fn json_logs_and_clean_exit_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, vec![0u8; 4096]).unwrap();
    let (server, _) = serve(&raw, &["--log-format", "json"]);
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("nbd-serve exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    // Logs are JSON lines: check one from a short run that fails to open its file.
    let out = Command::new(BIN)
        .args(["/no/such/image", "--log-format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON log line in {stderr}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "ERROR", "{line}");
}

#[test]
fn differencing_vhd_chain_is_served_whole() {
    let nbdcopy = testkit::require_peer!("nbdcopy");
    let Some(fixtures) = testkit::fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for f in ["image.vhd", "image-differential.vhd"] {
        std::fs::copy(fixtures.join("vhd").join(f), dir.path().join(f)).unwrap();
    }
    let (_p, parent) = serve(&dir.path().join("image.vhd"), &["--read-only"]);
    let (_c, child) = serve(&dir.path().join("image-differential.vhd"), &["--read-only"]);
    let (a, b) = (dir.path().join("parent.raw"), dir.path().join("child.raw"));
    testkit::run(Command::new(&nbdcopy).arg(&parent).arg(&a));
    testkit::run(Command::new(&nbdcopy).arg(&child).arg(&b));
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(a.len(), 104_448);
    assert!(a == b, "the differencing child must read like its parent");
    assert!(a.iter().any(|&x| x != 0), "the parent holds data");
}

/// Spill files (deleted, still open) nbd-serve process `pid` holds under `dir`.
fn open_spill_files(pid: u32, dir: &Path) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with(&*dir.to_string_lossy()))
        .collect()
}

/// Every snapshot overlay goes with its connection, however the client leaves: with
/// NBD_CMD_DISC, by closing its socket without a word, or by exiting with requests
/// in flight and replies unread (the kernel resets the connection). Each client first
/// writes past the RAM limit, so its overlay holds a spill file.
#[test]
fn snapshot_overlays_close_when_their_clients_leave() {
    testkit::require_peer!("nbdsh");
    let dir = tempfile::tempdir().unwrap();
    let (raw, spill) = image_and_spill_folder(dir.path());
    let (server, uri) = serve(
        &raw,
        &[
            "--snapshot",
            "--snapshot-ram",
            "64K",
            "--snapshot-dir",
            spill.to_str().unwrap(),
        ],
    );
    let pid = server.id();
    let leaves = [
        ("NBD_CMD_DISC", "h.shutdown()"),
        ("closing the socket without DISC", "os._exit(0)"),
        (
            "exiting with requests in flight",
            "[h.aio_pread(nbd.Buffer(1 << 20), i << 20) for i in range(8)]\nos._exit(0)",
        ),
    ];
    for (how, leave) in leaves {
        // The client holds its connection until told to leave, so the overlay is seen
        // open first.
        let ready = dir.path().join("ready");
        let go = dir.path().join("go");
        let _ = std::fs::remove_file(&ready);
        let _ = std::fs::remove_file(&go);
        let script = format!(
            r#"
import os, time
h = nbd.NBD(); h.connect_uri({uri:?})
h.pwrite(b"S" * (512 << 10), 0)
open({ready:?}, "w").close()
deadline = time.time() + 60
while not os.path.exists({go:?}) and time.time() < deadline:
    time.sleep(0.01)
{leave}
"#,
            ready = ready.to_str().unwrap(),
            go = go.to_str().unwrap(),
        );
        let mut client = ChildGuard::spawn(nbdsh_command().args(["-c", &script]));
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while !ready.exists() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(ready.exists(), "{how}: the client never wrote");
        assert_eq!(
            open_spill_files(pid, &spill).len(),
            1,
            "{how}: the client's overlay spilled to one file"
        );
        std::fs::write(&go, b"").unwrap();
        let exited = client.child().wait().unwrap();
        assert!(exited.success(), "{how}: the client failed: {exited:?}");
        // Gone within 3 s of the client (the connection's end is noticed at once).
        let until = std::time::Instant::now() + Duration::from_secs(3);
        let mut open = open_spill_files(pid, &spill);
        while !open.is_empty() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            open = open_spill_files(pid, &spill);
        }
        assert!(
            open.is_empty(),
            "{how}: overlay files still open 3 s after the client left: {open:?}"
        );
    }
}
