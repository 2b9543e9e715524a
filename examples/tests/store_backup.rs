//! `provision store backup` while provisiond serves the store and a device writes to
//! its private disk: the backup opens as a store, every version file in it checks
//! clean, and the private disk is either copied clean or named as left out; a second
//! backup once the device is idle holds everything.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testkit::ChildGuard;

const PROVISIOND: &str = env!("CARGO_BIN_EXE_provisiond");
const PROVISION: &str = env!("CARGO_BIN_EXE_provision");
const VHD: &str = env!("CARGO_BIN_EXE_vhd");
const MAC: &str = "52:54:00:bb:00:02";

fn provision(args: &[&str]) -> std::process::Output {
    testkit::run_output(Command::new(PROVISION).args(args), testkit::DEFAULT_TIMEOUT)
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = provision(&[&["--store", store.to_str().unwrap()], args].concat());
    assert!(
        out.status.success(),
        "provision {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `vhd check` of `file` passes.
fn checks_clean(file: &Path) -> bool {
    let out = testkit::run_output(
        Command::new(VHD).arg("check").arg(file),
        testkit::DEFAULT_TIMEOUT,
    );
    out.status.success()
}

#[test]
fn a_backup_of_a_served_store_while_a_private_disk_is_written() {
    let qemu_io = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&store, &["vdisk", "create", "os", "--size", "32M"]);
    ok(&store, &["version", "new", "os", "--note", "second"]);
    ok(&store, &["version", "promote", "os"]);
    ok(&store, &["version", "promote", "os"]);
    ok(&store, &["device", "add", MAC, "seat-2"]);
    ok(&store, &["assign", "seat-2", "os", "--mode", "private"]);

    let port = testkit::free_tcp_port();
    let api_port = testkit::free_tcp_port();
    let config = dir.path().join("provisiond.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"store\"\n[nbd]\nlisten = \"127.0.0.1:{port}\"\n\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\ntoken = \"backup-test-token-0123\"\n"
        ),
    )
    .unwrap();
    let _server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    testkit::wait_for_tcp(addr, Duration::from_secs(20));
    let reset = provision(&[
        "--config",
        config.to_str().unwrap(),
        "--json",
        "sessions",
        "reset",
        "seat-2",
    ]);
    let reset: serde_json::Value = serde_json::from_slice(&reset.stdout).unwrap();
    let export = format!("nbd://{addr}/{MAC}/os/{}", reset["token"].as_str().unwrap());

    // The device writes its private disk all along the first backup.
    let writing = Arc::new(AtomicBool::new(true));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (writing, writes, export) = (writing.clone(), writes.clone(), export.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut round = 0u64;
            while writing.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
                // One connection writing continuously: 96 writes of 256 KiB.
                let mut cmd = Command::new(&qemu_io);
                cmd.args(["-f", "raw"]);
                for i in 0..96u64 {
                    let at = ((round * 96 + i) % 96) << 18;
                    cmd.arg("-c")
                        .arg(format!("write -P {} {at} 256K", (round + i) % 200 + 1));
                }
                let out = cmd.arg(&export).output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                writes.fetch_add(1, Ordering::Relaxed);
                round += 1;
            }
        })
    };
    let wait = Instant::now();
    while writes.load(Ordering::Relaxed) < 2 && wait.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let busy = dir.path().join("backup-busy");
    let out = provision(&[
        "--store",
        store.to_str().unwrap(),
        "store",
        "backup",
        busy.to_str().unwrap(),
    ]);
    writing.store(false, Ordering::Relaxed);
    writer.join().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("the backup during writes: {said}");
    let private = busy.join("private/525400bb0002/os.vhd");
    match out.status.code() {
        Some(0) => assert!(checks_clean(&private), "the private disk copy: {said}"),
        Some(4) => {
            assert!(
                said.contains("left out private/525400bb0002/os.vhd"),
                "{said}"
            );
            assert!(!private.exists(), "a torn private disk was kept: {said}");
        }
        other => panic!("store backup exited {other:?}: {said}"),
    }
    // It opens as a store, with every version, each checking clean.
    let versions = ok(&busy, &["--json", "version", "list", "os"]);
    let versions: serde_json::Value = serde_json::from_str(&versions).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");
    for v in ["os/v0.vhd", "os/v1.vhd"] {
        assert!(checks_clean(&busy.join(v)), "{v} in the backup");
    }
    assert!(ok(&busy, &["device", "list"]).contains("seat-2"));

    // Idle: everything, the private disk with the device's last write.
    let idle = dir.path().join("backup-idle");
    let said = ok(&store, &["store", "backup", idle.to_str().unwrap()]);
    assert!(said.contains("backed up 4 file(s)"), "{said}");
    assert!(checks_clean(&idle.join("private/525400bb0002/os.vhd")));

    // Refusals: a folder that holds something; over the API.
    let out = provision(&[
        "--store",
        store.to_str().unwrap(),
        "store",
        "backup",
        idle.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    let out = provision(&[
        "--config",
        config.to_str().unwrap(),
        "store",
        "backup",
        dir.path().join("elsewhere").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store"));
}
