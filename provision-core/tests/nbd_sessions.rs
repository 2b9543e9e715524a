//! Device sessions served over NBD to real clients (qemu-io, nbdinfo).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use provision_core::adapters::nbd::SessionExports;
use provision_core::{DeviceType, Mac, Mode, SessionSettings, Sessions, Store};

const SIZE: u64 = 4 << 20;

/// Serves `sessions` over NBD on a loopback port from a background runtime.
fn serve(sessions: Sessions) -> (SocketAddr, nbd_proto::driver::server::ShutdownHandle) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = nbd_proto::driver::server::Server::new(
        Arc::new(SessionExports::new(sessions)),
        Default::default(),
    );
    let handle = server.shutdown_handle();
    std::thread::spawn(move || runtime.block_on(server.serve(listener)));
    (addr, handle)
}

fn qemu_io(qemu_io: &Path, url: &str, command: &str) -> std::process::Output {
    testkit::run_output(
        Command::new(qemu_io).args(["-f", "raw", "-c", command, url]),
        testkit::DEFAULT_TIMEOUT,
    )
}

#[test]
fn devices_read_and_write_their_own_sessions_over_nbd() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let qemu_io_bin = testkit::require_peer!("qemu-io");
    let nbdinfo = testkit::require_peer!("nbdinfo");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("store/lab")).unwrap();
    let base = dir.path().join("store/lab/v0.vhd");
    testkit::run(
        Command::new(&qemu_img)
            .args(["create", "-f", "vpc", "-o", "force_size=on"])
            .arg(&base)
            .arg(SIZE.to_string()),
    );
    testkit::run(
        Command::new(&qemu_io_bin)
            .args(["-f", "vpc", "-c", "write -P 0x5a 0 1M"])
            .arg(&base),
    );
    let base_before = std::fs::read(&base).unwrap();

    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    store.add_vdisk("lab", SIZE, "", "lab/v0.vhd").unwrap();
    for n in 1..=2u8 {
        let mac = Mac([0x52, 0x54, 0, 0, 0, n]);
        store
            .add_device(mac, &format!("seat-{n}"), None, DeviceType::Production)
            .unwrap();
        store
            .assign(&format!("seat-{n}"), "lab", Mode::Standard, None)
            .unwrap();
    }
    let (addr, shutdown) = serve(Sessions::new(store, SessionSettings::default()).unwrap());
    let one = format!("nbd://{addr}/52:54:00:00:00:01/lab");
    let two = format!("nbd://{addr}/52:54:00:00:00:02");

    let out = qemu_io(&qemu_io_bin, &one, "write -P 0xc1 1000 3333");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = qemu_io(&qemu_io_bin, &one, "read -P 0xc1 1000 3333");
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("fail"),
        "{out:?}"
    );
    let out = qemu_io(&qemu_io_bin, &two, "read -P 0x5a 0 1M");
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("fail"),
        "{out:?}"
    );

    let size = testkit::run(Command::new(&nbdinfo).args(["--size", &two]));
    assert_eq!(size.trim(), SIZE.to_string());
    let refused = testkit::run_output(
        Command::new(&nbdinfo).arg(format!("nbd://{addr}/52:54:00:00:00:09")),
        testkit::DEFAULT_TIMEOUT,
    );
    assert!(!refused.status.success(), "an unknown device was served");

    shutdown.shutdown();
    assert_eq!(
        std::fs::read(&base).unwrap(),
        base_before,
        "the shared base changed"
    );
}
