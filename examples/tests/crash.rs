//! SIGKILL in the middle of import, version creation, merge and private writes: the
//! store still opens, what was acknowledged survives, leftovers are reported and can
//! be cleaned.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::ChildGuard;

const PROVISIOND: &str = env!("CARGO_BIN_EXE_provisiond");
const PROVISION: &str = env!("CARGO_BIN_EXE_provision");
const SIZE: u64 = 192 << 20;

fn provision(store: &Path, args: &[&str]) -> std::process::Output {
    testkit::run_output(
        Command::new(PROVISION).arg("--store").arg(store).args(args),
        testkit::DEFAULT_TIMEOUT,
    )
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = provision(store, args);
    assert!(
        out.status.success(),
        "provision {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts `provision args` and kills it with SIGKILL after `delay`.
fn kill_after(store: &Path, args: &[&str], delay: Duration) {
    let mut child = ChildGuard::spawn(Command::new(PROVISION).arg("--store").arg(store).args(args));
    std::thread::sleep(delay);
    child.child().kill().ok();
}

/// After a crash the store opens, `check` reports or passes, and `--clean` leaves a
/// consistent store. Returns whether there were leftovers.
fn recover(store: &Path) -> bool {
    let check = provision(store, &["store", "check"]);
    assert!(
        matches!(check.status.code(), Some(0 | 4)),
        "store check failed: {check:?}"
    );
    ok(store, &["store", "check", "--clean"]);
    ok(store, &["store", "check"]);
    check.status.code() == Some(4)
}

#[test]
fn killed_operations_leave_a_consistent_store() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let source = dir.path().join("source.raw");
    // Non-zero data throughout, so the import has real work to do.
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8 | 1).collect();
    std::fs::write(&source, &data).unwrap();
    ok(&store, &["vdisk", "create", "seed", "--size", "1M"]);

    // Import, killed at several points: afterwards the vDisk is either whole or absent.
    let mut interrupted = 0;
    for (i, ms) in [5u64, 60, 250].into_iter().enumerate() {
        let name = format!("os{i}");
        kill_after(
            &store,
            &["vdisk", "import", &name, source.to_str().unwrap()],
            Duration::from_millis(ms),
        );
        let leftovers = recover(&store);
        let show = provision(&store, &["vdisk", "show", &name]);
        interrupted += usize::from(leftovers || !show.status.success());
        if show.status.success() {
            let raw = dir.path().join(format!("{name}.raw"));
            testkit::run(
                Command::new(&qemu_img)
                    .args(["convert", "-f", "vpc", "-O", "raw"])
                    .arg(store.join(format!("{name}/v0.vhd")))
                    .arg(&raw),
            );
            testkit::run(
                Command::new(&qemu_img)
                    .args(["compare", "-f", "raw", "-F", "raw"])
                    .arg(&source)
                    .arg(&raw),
            );
        } else {
            assert_eq!(show.status.code(), Some(3), "{show:?}");
        }
    }

    assert!(
        interrupted > 0,
        "no kill interrupted an import: the test proves nothing"
    );

    // A whole import, then a version and a merge, each killed.
    ok(&store, &["vdisk", "import", "os", source.to_str().unwrap()]);
    kill_after(&store, &["version", "new", "os"], Duration::from_millis(2));
    recover(&store);
    let versions: serde_json::Value =
        serde_json::from_str(&ok(&store, &["--json", "version", "list", "os"])).unwrap();
    if versions.as_array().unwrap().len() == 1 {
        ok(&store, &["version", "new", "os"]);
    }
    kill_after(
        &store,
        &["version", "merge", "os", "1"],
        Duration::from_millis(100),
    );
    recover(&store);
    let flat = dir.path().join("flat.raw");
    let chain = vhd::OpenOptions::new(true)
        .open(&store.join("os/v1.vhd"))
        .unwrap();
    vhd::convert(&chain, &flat, vhd::Target::Raw, &mut |_, _| {}).unwrap();
    testkit::run(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&source)
            .arg(&flat),
    );
}

#[test]
fn flushed_private_writes_survive_a_killed_server() {
    let qemu_io = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&store, &["vdisk", "create", "os", "--size", "16M"]);
    ok(&store, &["device", "add", "52:54:00:bb:00:01", "seat"]);
    ok(&store, &["assign", "seat", "os", "--mode", "private"]);
    let port = testkit::free_tcp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.path().join("provisiond.toml");
    std::fs::write(
        &config,
        format!("store = \"store\"\n[nbd]\nlisten = \"{addr}\"\n"),
    )
    .unwrap();
    let url = format!("nbd://{addr}/52:54:00:bb:00:01");

    for round in 1..=3u8 {
        let mut server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
        testkit::wait_for_tcp(addr, Duration::from_secs(20));
        // Everything flushed in earlier rounds is there.
        for earlier in 1..round {
            let offset = ((u64::from(earlier) * 3) << 20) - 1000;
            let cmd = format!("read -P {earlier} {offset} 5000");
            let out = testkit::run(Command::new(&qemu_io).args(["-f", "raw", "-c", &cmd, &url]));
            assert!(
                !out.contains("fail"),
                "round {round}: data of round {earlier} lost: {out}"
            );
        }
        let offset = ((u64::from(round) * 3) << 20) - 1000;
        let cmd = format!("write -P {round} {offset} 5000");
        testkit::run(Command::new(&qemu_io).args(["-f", "raw", "-c", &cmd, "-c", "flush", &url]));
        server.child().kill().unwrap();
        server.child().wait().unwrap();
    }
}
