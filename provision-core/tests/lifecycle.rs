//! The whole life of a vDisk through real NBD clients: import, standard and private
//! devices, a maintenance version, test, promote, roll back, merge, server restarts.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod common;

use nbd_proto::driver::server::{Server, ShutdownHandle};
use provision_core::adapters::nbd::SessionExports;
use provision_core::{
    DeviceType, Mac, Mode, SessionMode, SessionSettings, Sessions, Store, VersionState,
    import_vdisk, leftover_files, merge_version, new_version,
};

const SIZE: u64 = 6 << 20;
const PROD: &str = "52:54:00:00:00:01";
const TEST: &str = "52:54:00:00:00:02";
const MAINT: &str = "52:54:00:00:00:03";
const PRIVATE: &str = "52:54:00:00:00:04";

struct Running {
    addr: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    sessions: Sessions,
}

impl Running {
    fn start(store_dir: &Path) -> Self {
        let store = Arc::new(Store::open(store_dir).unwrap());
        let sessions = Sessions::new(store, SessionSettings::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(
            Arc::new(SessionExports::new(sessions.clone())),
            Default::default(),
        );
        let shutdown = server.shutdown_handle();
        let thread = std::thread::spawn(move || {
            runtime.block_on(server.serve(listener)).unwrap();
        });
        Running {
            addr,
            shutdown,
            thread: Some(thread),
            sessions,
        }
    }

    /// The device's export of `os` in its current boot.
    fn url(&self, mac: &str) -> String {
        format!(
            "nbd://{}/{}",
            self.addr,
            common::export(&self.sessions, mac, "os")
        )
    }

    fn stop(mut self) {
        self.shutdown.shutdown();
        self.thread.take().unwrap().join().unwrap();
    }
}

/// Runs qemu-io commands on a device's export; returns whether every one succeeded
/// (a pattern mismatch of `read -P` counts as a failure).
fn qemu_io(bin: &Path, url: &str, commands: &[&str]) -> bool {
    let mut cmd = Command::new(bin);
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = testkit::run_output(cmd.arg(url), testkit::DEFAULT_TIMEOUT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success() && !text.contains("fail") && !text.contains("error")
}

fn boot(running: &Running, mac: &str) {
    common::reboot(&running.sessions, mac.parse::<Mac>().unwrap());
}

#[test]
fn versions_devices_and_restarts() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let qio = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");

    // Import a base made by qemu-img: 0x11 in the first MiB.
    let source = dir.path().join("source.vhd");
    testkit::run(
        Command::new(&qemu_img)
            .args(["create", "-f", "vpc", "-o", "force_size=on"])
            .arg(&source)
            .arg(SIZE.to_string()),
    );
    testkit::run(
        Command::new(&qio)
            .args(["-f", "vpc", "-c", "write -P 0x11 0 1M"])
            .arg(&source),
    );
    {
        let store = Store::open(&store_dir).unwrap();
        let mut calls = 0;
        let vdisk = import_vdisk(&store, "os", &source, "test OS", &mut |_, _| calls += 1).unwrap();
        assert_eq!(vdisk.size, SIZE);
        assert!(calls > 0, "no progress reported");
        for (mac, name, device_type, mode) in [
            (PROD, "prod", DeviceType::Production, Mode::Standard),
            (TEST, "test", DeviceType::Test, Mode::Standard),
            (MAINT, "maint", DeviceType::Maintenance, Mode::Standard),
            (PRIVATE, "private", DeviceType::Production, Mode::Private),
        ] {
            store
                .add_device(mac.parse().unwrap(), name, None, device_type)
                .unwrap();
            store.assign(name, "os", mode, None).unwrap();
        }
    }

    let running = Running::start(&store_dir);
    // Standard mode: a device's writes are its own, and gone after its next boot.
    assert!(qemu_io(
        &qio,
        &running.url(PROD),
        &["write -P 0x22 4096 4096", "read -P 0x22 4096 4096"]
    ));
    assert!(qemu_io(
        &qio,
        &running.url(TEST),
        &["read -P 0x11 4096 4096"]
    ));
    assert!(
        qemu_io(&qio, &running.url(PROD), &["read -P 0x22 4096 4096"]),
        "reconnect lost the cache"
    );
    boot(&running, PROD);
    assert!(
        qemu_io(&qio, &running.url(PROD), &["read -P 0x11 4096 4096"]),
        "the cache outlived a boot"
    );
    assert!(qemu_io(
        &qio,
        &running.url(PROD),
        &["write -P 0x55 4096 4096", "flush"]
    ));
    // Private mode: writes persist across boots and server restarts.
    assert!(qemu_io(
        &qio,
        &running.url(PRIVATE),
        &["write -P 0x44 8192 512", "flush"]
    ));
    boot(&running, PRIVATE);
    running.stop();

    // Version 1, written by the maintenance device.
    let store = Store::open(&store_dir).unwrap();
    let v1 = new_version(&store, "os", "new tools").unwrap();
    assert_eq!((v1.number, v1.state), (1, VersionState::Maintenance));
    drop(store);
    let running = Running::start(&store_dir);
    assert!(
        qemu_io(&qio, &running.url(PRIVATE), &["read -P 0x44 8192 512"]),
        "private data lost in a restart"
    );
    // A standard-mode boot's write cache survived the restart (on disk): its
    // reconnect with the same boot token sees every flushed byte.
    assert!(
        qemu_io(&qio, &running.url(PROD), &["read -P 0x55 4096 4096"]),
        "a standard-mode write cache was lost in a restart"
    );
    assert!(qemu_io(
        &qio,
        &running.url(MAINT),
        &["write -P 0x33 0 64K", "flush"]
    ));
    let store = Store::open(&store_dir).unwrap();
    store.promote("os").unwrap(); // test
    boot(&running, TEST);
    assert!(
        qemu_io(&qio, &running.url(TEST), &["read -P 0x33 0 64K"]),
        "test device does not see version 1"
    );
    boot(&running, PROD);
    assert!(
        qemu_io(&qio, &running.url(PROD), &["read -P 0x11 0 64K"]),
        "production saw an untested version"
    );

    // A production session opened before the promotion stays on version 0.
    let prod_mac: Mac = PROD.parse().unwrap();
    let pinned_session = common::open(&running.sessions, prod_mac, "os").unwrap();
    assert_eq!(
        (pinned_session.info().version, pinned_session.info().mode),
        (0, SessionMode::Standard)
    );
    store.promote("os").unwrap(); // production
    let mut buf = [0u8; 4];
    vhd::Disk::read_at(&*pinned_session, &mut buf, 0).unwrap();
    assert_eq!(buf, [0x11; 4], "a running session changed version");
    drop(pinned_session);
    boot(&running, PROD);
    assert!(
        qemu_io(&qio, &running.url(PROD), &["read -P 0x33 0 64K"]),
        "production missed the promotion"
    );

    // Roll back: production boots version 0 again.
    assert_eq!(store.rollback("os").unwrap().number, 0);
    boot(&running, PROD);
    assert!(
        qemu_io(&qio, &running.url(PROD), &["read -P 0x11 0 64K"]),
        "rollback did not take"
    );

    // Merge version 1 into a new base while a session still reads the old chain:
    // every version (and the private disk over version 0) reads the same before and
    // after, through NBD, and the merged file itself matches for qemu's VHD reader.
    let read_all = |stage: &str| {
        let mut files = Vec::new();
        for (mac, what) in [(PROD, "v0"), (TEST, "v1"), (PRIVATE, "private")] {
            boot(&running, mac);
            let raw = dir.path().join(format!("{what}-{stage}.raw"));
            testkit::run(
                Command::new(&qemu_img)
                    .args(["convert", "-f", "raw", "-O", "raw"])
                    .arg(running.url(mac))
                    .arg(&raw),
            );
            files.push(raw);
        }
        files
    };
    let compare = |format: &str, a: &Path, b: &Path| {
        testkit::run(
            Command::new(&qemu_img)
                .args(["compare", "-f", format, "-F", "raw"])
                .arg(a)
                .arg(b),
        );
    };
    let versions = store.versions("os").unwrap();
    assert_eq!(
        versions.iter().map(|v| v.state).collect::<Vec<_>>(),
        [VersionState::Production, VersionState::Test]
    );
    let before = read_all("before");
    let v1_before = std::fs::read(&before[1]).unwrap();
    assert_ne!(v1_before, std::fs::read(&before[0]).unwrap());
    let test_mac: Mac = TEST.parse().unwrap();
    let old_chain = common::open(&running.sessions, test_mac, "os").unwrap();
    assert_eq!(old_chain.info().version, 1);
    let merged = Arc::new(AtomicBool::new(false));
    let reader = {
        let (session, done, expected) = (old_chain.clone(), merged.clone(), v1_before.clone());
        std::thread::spawn(move || {
            let mut passes = 0u32;
            let mut buf = vec![0u8; 256 << 10];
            // Whole passes during the merge, and the last one wholly after it.
            loop {
                let merged = done.load(Ordering::SeqCst);
                for (i, want) in expected.chunks(buf.len()).enumerate() {
                    let offset = (i * buf.len()) as u64;
                    vhd::Disk::read_at(session.as_ref(), &mut buf, offset).unwrap();
                    assert!(buf == want, "the old chain changed at {offset}");
                }
                passes += 1;
                if merged {
                    return passes;
                }
            }
        })
    };
    let mut progress = (0, 0);
    merge_version(&store, "os", 1, &mut |done, total| progress = (done, total)).unwrap();
    assert_eq!(progress, (SIZE, SIZE));
    merged.store(true, Ordering::SeqCst);
    assert!(reader.join().unwrap() >= 1);
    drop(old_chain);
    boot(&running, TEST);
    assert!(
        !running.sessions.file_in_use("os/v1.vhd"),
        "the old chain is still open: the reads after the merge would not see the new base"
    );
    let v1 = store_dir.join(&versions[1].file);
    assert!(
        vhd::OpenOptions::new(true)
            .open(&v1)
            .unwrap()
            .parent()
            .is_none(),
        "version 1 is still a differencing image"
    );
    let after = read_all("after");
    for (b, a) in before.iter().zip(&after) {
        compare("raw", b, a);
    }
    // The merged base and the untouched version 0, read by qemu's own VHD driver.
    compare("vpc", &v1, &before[1]);
    compare("vpc", &store_dir.join(&versions[0].file), &before[0]);
    running.stop();
    assert!(leftover_files(&store).unwrap().is_empty());
}

#[test]
fn a_maintenance_version_has_one_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    provision_core::create_vdisk(&store, "os", 1 << 20, "").unwrap();
    new_version(&store, "os", "").unwrap();
    for (n, name) in [(1u8, "maint-a"), (2, "maint-b")] {
        store
            .add_device(Mac([2, 0, 0, 0, 0, n]), name, None, DeviceType::Maintenance)
            .unwrap();
        store.assign(name, "os", Mode::Standard, None).unwrap();
    }
    let sessions = Sessions::new(store, SessionSettings::default()).unwrap();
    let first = common::open(&sessions, Mac([2, 0, 0, 0, 0, 1]), "os").unwrap();
    assert_eq!(first.info().mode, SessionMode::Maintenance);
    let second = common::open(&sessions, Mac([2, 0, 0, 0, 0, 2]), "os").unwrap_err();
    assert_eq!(
        second.kind(),
        provision_core::ErrorKind::Conflict,
        "{second}"
    );
    drop(first);
    common::open(&sessions, Mac([2, 0, 0, 0, 0, 2]), "os").unwrap();
}

#[test]
fn merge_and_promote_wait_for_the_maintenance_session() {
    use vhd::Disk;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    provision_core::create_vdisk(&store, "os", 1 << 20, "").unwrap();
    let maint = Mac([2, 0, 0, 0, 0, 1]);
    store
        .add_device(maint, "maint", None, DeviceType::Maintenance)
        .unwrap();
    store.assign("maint", "os", Mode::Standard, None).unwrap();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
    new_version(&store, "os", "").unwrap();
    let writer = common::open(&sessions, maint, "os").unwrap();
    assert_eq!(writer.info().mode, SessionMode::Maintenance);
    writer.write_at(&[0x5e; 4096], 0).unwrap();
    writer.flush().unwrap();

    // While the device writes version 1, neither promote nor merge touch it.
    for refused in [
        store.promote("os").map(drop).unwrap_err(),
        merge_version(&store, "os", 1, &mut |_, _| {})
            .map(drop)
            .unwrap_err(),
    ] {
        assert_eq!(
            refused.kind(),
            provision_core::ErrorKind::Conflict,
            "{refused}"
        );
        assert!(
            refused.to_string().contains("maintenance session"),
            "{refused}"
        );
    }
    assert_eq!(
        store.versions("os").unwrap()[1].state,
        VersionState::Maintenance
    );
    writer.write_at(&[0x6f; 4096], 4096).unwrap();
    writer.flush().unwrap();

    // Its next boot ends the session: then the version is promoted and merged, with
    // every flushed write in it.
    common::reboot(&sessions, maint);
    drop(writer);
    store.promote("os").unwrap();
    merge_version(&store, "os", 1, &mut |_, _| {}).unwrap();
    let merged = vhd::OpenOptions::new(true)
        .open(&dir.path().join(&store.versions("os").unwrap()[1].file))
        .unwrap();
    let mut buf = vec![0u8; 8192];
    merged.read_at(&mut buf, 0).unwrap();
    assert!(buf[..4096].iter().all(|b| *b == 0x5e) && buf[4096..].iter().all(|b| *b == 0x6f));
}
