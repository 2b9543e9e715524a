//! Per-device boot files fetched by real TFTP clients (curl, tftp-hpa).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use provision_core::adapters::tftp::{BootSettings, DeviceFiles};
use provision_core::{DeviceType, Mac, Mode, SessionSettings, Sessions, Store, create_vdisk};
use vhd::Disk;

fn serve(files: DeviceFiles) -> SocketAddr {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime
        .block_on(tftp::Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            files,
            tftp::ServerConfig::default(),
        ))
        .unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || runtime.block_on(server.run()));
    addr
}

#[test]
fn devices_fetch_their_script_and_personality() {
    let curl = testkit::require_peer!("curl");
    let tftp_hpa = testkit::require_peer!("tftp");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    create_vdisk(&store, "lab", 1 << 20, "").unwrap();
    create_vdisk(&store, "tools", 1 << 20, "").unwrap();
    let mac = Mac([0x52, 0x54, 0, 0xaa, 0, 1]);
    store
        .add_device(mac, "seat-1", None, DeviceType::Production)
        .unwrap();
    store.assign("seat-1", "lab", Mode::Standard, None).unwrap();
    store
        .assign("seat-1", "tools", Mode::Private, None)
        .unwrap();
    store
        .set_personality("seat-1", "role", Some("kiosk"))
        .unwrap();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
    let addr = serve(DeviceFiles::new(
        store,
        Some(sessions.clone()),
        BootSettings::new("10.0.0.1:10809"),
    ));

    // A write cache from the previous boot.
    let session = sessions.open(mac, Some("lab")).unwrap();
    session.write_at(&[7; 512], 0).unwrap();
    drop(session);

    let script = testkit::run(Command::new(&curl).args([
        "-s",
        &format!("tftp://{addr}/provision/52:54:00:aa:00:01.ipxe"),
    ]));
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(
        script.contains("item vdisk0 lab (standard)")
            && script.contains("item vdisk1 tools (private)"),
        "{script}"
    );
    assert!(
        script.contains("nbdroot=10.0.0.1:10809/52:54:00:aa:00:01/tools hostname=seat-1"),
        "{script}"
    );
    // From the TFTP root: iPXE would look for a relative path beside the script.
    assert!(script.contains("kernel /boot/lab/vmlinuz"), "{script}");

    // Fetching the script was a new boot: the old write cache is gone.
    let fresh = sessions.open(mac, Some("lab")).unwrap();
    let mut buf = [1u8; 4];
    fresh.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0; 4]);

    let out = dir.path().join("personality");
    testkit::run(
        Command::new(&tftp_hpa)
            .args([
                "-m",
                "binary",
                &addr.ip().to_string(),
                &addr.port().to_string(),
                "-c",
                "get",
            ])
            .arg("provision/52-54-00-AA-00-01.personality")
            .arg(&out),
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "hostname=seat-1\nrole=kiosk\n"
    );

    let unknown = testkit::run_output(
        Command::new(&curl).args([
            "-s",
            "-f",
            &format!("tftp://{addr}/provision/52:54:00:aa:00:09.ipxe"),
        ]),
        testkit::DEFAULT_TIMEOUT,
    );
    assert!(
        !unknown.status.success() && unknown.stdout.is_empty(),
        "an unknown device got a script"
    );
    let other = testkit::run_output(
        Command::new(&curl).args(["-s", "-f", &format!("tftp://{addr}/etc/passwd")]),
        testkit::DEFAULT_TIMEOUT,
    );
    assert!(!other.status.success() && other.stdout.is_empty());
}
