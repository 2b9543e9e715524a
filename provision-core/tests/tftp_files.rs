//! Per-device boot files fetched by real TFTP clients (curl, tftp-hpa).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use provision_core::adapters::tftp::{BootSettings, BootStart, DeviceFiles};
use provision_core::{
    BootCause, DeviceType, ErrorKind, Mac, Mode, SessionSettings, Sessions, Store, create_vdisk,
};
use vhd::Disk;

mod common;

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

/// Fetches `path` from the TFTP server at `addr` with curl; `None` when refused.
fn fetch(curl: &std::path::Path, addr: SocketAddr, path: &str) -> Option<String> {
    let out = testkit::run_output(
        Command::new(curl).args(["-s", "-f", &format!("tftp://{addr}/{path}")]),
        testkit::DEFAULT_TIMEOUT,
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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
    store
        .set_secret_personality("seat-1", "join_password", "hunter2")
        .unwrap();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
    let addr = serve(DeviceFiles::new(
        store,
        sessions.clone(),
        BootSettings::new("10.0.0.1:10809"),
        BootStart::Script,
    ));

    // A write cache from the previous boot.
    let session = common::open(&sessions, mac, "lab").unwrap();
    session.write_at(&[7; 512], 0).unwrap();
    let old = sessions.current_boot(mac).unwrap().unwrap();

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
    // Fetching the script started a new boot (no DHCP service here): its token is
    // in the export names, the old boot's session ended.
    let boot = sessions.current_boot(mac).unwrap().unwrap();
    assert_eq!(
        (boot.number, boot.cause),
        (old.number + 1, BootCause::Script)
    );
    assert_eq!(boot.address, Some(addr.ip()));
    assert!(
        script.contains(&format!(
            "nbdroot=10.0.0.1:10809/52:54:00:aa:00:01/tools/{} hostname=seat-1",
            boot.token
        )),
        "{script}"
    );
    assert!(session.is_ended());
    // From the TFTP root: iPXE would look for a relative path beside the script.
    assert!(script.contains("kernel /boot/lab/vmlinuz"), "{script}");

    // The old write cache is gone.
    let fresh = sessions.open(mac, "lab", &boot.token).unwrap();
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
            .arg(format!(
                "provision/52-54-00-AA-00-01/{}.personality",
                boot.token
            ))
            .arg(&out),
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "hostname=seat-1\njoin_password=hunter2\nrole=kiosk\n",
        "the device's boot gets its secrets too"
    );
    // Without the boot's token, or with an old one, no personality.
    for path in [
        "provision/52-54-00-AA-00-01.personality".to_owned(),
        format!("provision/52:54:00:aa:00:01/{}.personality", old.token),
        "provision/52:54:00:aa:00:01/.personality".to_owned(),
    ] {
        assert_eq!(fetch(&curl, addr, &path), None, "{path} was served");
    }

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

#[test]
fn a_script_fetch_from_another_address_resets_nothing() {
    let curl = testkit::require_peer!("curl");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    create_vdisk(&store, "lab", 1 << 20, "").unwrap();
    let mac = Mac([0x52, 0x54, 0, 0xaa, 0, 2]);
    store
        .add_device(mac, "seat-2", None, DeviceType::Production)
        .unwrap();
    store.assign("seat-2", "lab", Mode::Standard, None).unwrap();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
    let addr = serve(DeviceFiles::new(
        store,
        sessions.clone(),
        BootSettings::new("10.0.0.1:10809"),
        BootStart::Dhcp,
    ));
    let path = "provision/52:54:00:aa:00:02.ipxe";

    // The device's DHCP exchange put it at 127.0.0.2; it is running, with data in
    // its write cache.
    let boot = sessions
        .start_boot(mac, BootCause::Dhcp, Some("127.0.0.2".parse().unwrap()))
        .unwrap()
        .boot;
    let session = sessions.open(mac, "lab", &boot.token).unwrap();
    session.write_at(&[9; 512], 0).unwrap();

    // A host at 127.0.0.1 asks for its script: refused; the device's boot, session and
    // cache are untouched, and the token never left the server.
    assert_eq!(
        fetch(&curl, addr, path),
        None,
        "the script went to another address"
    );
    assert_eq!(sessions.current_boot(mac).unwrap().unwrap(), boot);
    assert!(!session.is_ended());
    let mut buf = [0u8; 512];
    session.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [9; 512]);

    // The device itself gets its script, with the running boot's token (a fetch never
    // starts a boot when the DHCP service does).
    let device_side = testkit::run_output(
        Command::new(&curl).args([
            "-s",
            "-f",
            "--interface",
            "127.0.0.2",
            &format!("tftp://{addr}/{path}"),
        ]),
        testkit::DEFAULT_TIMEOUT,
    );
    let script = String::from_utf8_lossy(&device_side.stdout);
    assert!(script.contains(&boot.token.to_string()), "{script}");
    assert!(!session.is_ended());
    // Stale tokens stay refused.
    let stale = sessions
        .open(mac, "lab", &provision_core::Token::random())
        .unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Refused);
}
