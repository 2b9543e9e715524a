//! Device sessions served over NBD to real clients (qemu-io, nbdinfo).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use provision_core::adapters::nbd::SessionExports;
use provision_core::{BootCause, DeviceType, Mac, Mode, SessionSettings, Sessions, Store, Token};

mod common;
use common::export;

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

/// The URL of the device's `lab` in its current boot.
fn lab_url(addr: SocketAddr, sessions: &Sessions, mac: &str) -> String {
    format!("nbd://{addr}/{}", export(sessions, mac, "lab"))
}

fn qemu_io(qemu_io: &Path, url: &str, command: &str) -> std::process::Output {
    testkit::run_output(
        Command::new(qemu_io).args(["-f", "raw", "-c", command, url]),
        testkit::DEFAULT_TIMEOUT,
    )
}

/// `dir/store/lab/v0.vhd`: a dynamic VHD of SIZE bytes, made by qemu-img, whose first
/// MiB holds 0x5a (written by qemu-io) and the rest is unallocated.
fn lab_base(dir: &Path, qemu_img: &Path, qemu_io: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("store/lab")).unwrap();
    let base = dir.join("store/lab/v0.vhd");
    testkit::run(
        Command::new(qemu_img)
            .args(["create", "-f", "vpc", "-o", "force_size=on"])
            .arg(&base)
            .arg(SIZE.to_string()),
    );
    testkit::run(
        Command::new(qemu_io)
            .args(["-f", "vpc", "-c", "write -P 0x5a 0 1M"])
            .arg(&base),
    );
    base
}

#[test]
fn devices_read_and_write_their_own_sessions_over_nbd() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let qemu_io_bin = testkit::require_peer!("qemu-io");
    let nbdinfo = testkit::require_peer!("nbdinfo");
    let dir = tempfile::tempdir().unwrap();
    let base = lab_base(dir.path(), &qemu_img, &qemu_io_bin);
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
    let sessions = Sessions::new(store, SessionSettings::default()).unwrap();
    let (addr, shutdown) = serve(sessions.clone());
    let (one, two) = (
        lab_url(addr, &sessions, "52:54:00:00:00:01"),
        lab_url(addr, &sessions, "52:54:00:00:00:02"),
    );

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
        Command::new(&nbdinfo).arg(format!(
            "nbd://{addr}/52:54:00:00:00:09/lab/{}",
            Token::random()
        )),
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

/// Runs qemu-io commands on `url` within `timeout`; returns (exit success, stdout and
/// stderr together).
fn qemu_io_all(qemu_io: &Path, url: &str, commands: &[&str], timeout: Duration) -> (bool, String) {
    let mut cmd = Command::new(qemu_io);
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = testkit::run_output(cmd.arg(url), timeout);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// True when every qemu-io command succeeded (a `read -P` mismatch counts as failure).
fn all_ok(qemu_io: &Path, url: &str, commands: &[&str]) -> bool {
    let (ok, text) = qemu_io_all(qemu_io, url, commands, testkit::DEFAULT_TIMEOUT);
    ok && !text.contains("fail") && !text.contains("error")
}

#[test]
fn a_full_write_cache_returns_enospc_to_nbd_clients() {
    let qemu_io_bin = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    provision_core::create_vdisk(&store, "lab", SIZE, "").unwrap();
    for n in 1..=2u8 {
        let name = format!("seat-{n}");
        store
            .add_device(
                Mac([0x52, 0x54, 0, 0, 0, n]),
                &name,
                None,
                DeviceType::Production,
            )
            .unwrap();
        store.assign(&name, "lab", Mode::Standard, None).unwrap();
    }
    // 64 KiB in RAM, then the spill file, 256 KiB in all per device.
    let settings = SessionSettings {
        cache_ram_bytes: 64 << 10,
        cache_quota_bytes: 256 << 10,
        durable_caches: false,
        ..SessionSettings::default()
    };
    let sessions = Sessions::new(store, settings).unwrap();
    let (addr, shutdown) = serve(sessions.clone());
    let (one, two) = (
        lab_url(addr, &sessions, "52:54:00:00:00:01"),
        lab_url(addr, &sessions, "52:54:00:00:00:02"),
    );
    let seat_one = Mac([0x52, 0x54, 0, 0, 0, 1]);

    // 192 KiB fit (RAM and spill file); the next 128 KiB do not: ENOSPC on that write,
    // promptly, and the same connection goes on reading what it wrote.
    let started = Instant::now();
    let (_, text) = qemu_io_all(
        &qemu_io_bin,
        &one,
        &[
            "write -P 0x11 0 192K",
            "write -P 0x22 1M 128K",
            "read -P 0x11 0 192K",
        ],
        Duration::from_secs(30),
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the full cache stalled the client"
    );
    let wrote = text.find("wrote 196608/196608 bytes at offset 0");
    let refused = text.find("write failed: No space left on device");
    let read = text.find("read 196608/196608 bytes at offset 0");
    assert!(
        wrote < refused && refused < read && wrote.is_some() && !text.contains("1048576"),
        "expected: write ok, ENOSPC, read ok; qemu-io said:\n{text}"
    );
    assert_eq!(sessions.cache_usage(seat_one, "lab"), Some(192 << 10));

    // A new connection of the full device: still ENOSPC for new blocks, and a rewrite
    // of blocks it already holds still succeeds (the quota counts blocks, not writes).
    let (_, text) = qemu_io_all(
        &qemu_io_bin,
        &one,
        &["write -P 0x33 2M 128K", "write -P 0x44 0 64K"],
        Duration::from_secs(30),
    );
    let refused = text.find("write failed: No space left on device");
    let rewrote = text.find("wrote 65536/65536 bytes at offset 0");
    assert!(refused.is_some() && refused < rewrote, "{text}");

    // The other device goes on: its own cache, the base underneath.
    assert!(
        all_ok(
            &qemu_io_bin,
            &two,
            &[
                "read -P 0 0 64K",
                "write -P 0x55 0 192K",
                "read -P 0x55 0 192K",
                "read -P 0 1M 128K",
            ]
        ),
        "the second device was affected by the first's full cache"
    );
    // And the first device's data is intact, nothing of the refused writes landed.
    assert!(all_ok(
        &qemu_io_bin,
        &one,
        &[
            "read -P 0x44 0 64K",
            "read -P 0x11 64K 128K",
            "read -P 0 2M 128K"
        ]
    ));
    // Its next boot starts with an empty cache and can write again.
    sessions
        .start_boot(seat_one, BootCause::Dhcp, None)
        .unwrap();
    let one = lab_url(addr, &sessions, "52:54:00:00:00:01");
    assert!(all_ok(
        &qemu_io_bin,
        &one,
        &["write -P 0x66 1M 128K", "read -P 0x66 1M 128K"]
    ));
    shutdown.shutdown();
}

#[test]
fn trim_over_nbd_gives_a_full_durable_cache_room_again() {
    let qemu_io_bin = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    provision_core::create_vdisk(&store, "lab", 16 << 20, "").unwrap();
    store
        .add_device(
            Mac([0x52, 0x54, 0, 0, 0, 1]),
            "seat-1",
            None,
            DeviceType::Production,
        )
        .unwrap();
    store.assign("seat-1", "lab", Mode::Standard, None).unwrap();
    // A durable write cache (a differencing VHD, 2 MiB blocks) with 5 MiB of quota.
    let settings = SessionSettings {
        cache_quota_bytes: 5 << 20,
        durable_caches: true,
        ..SessionSettings::default()
    };
    let sessions = Sessions::new(store, settings).unwrap();
    let (addr, shutdown) = serve(sessions.clone());
    let one = lab_url(addr, &sessions, "52:54:00:00:00:01");

    // Three blocks, then ENOSPC; the client discards (NBD TRIM) two of them, flushes,
    // and the same write succeeds.
    let (_, text) = qemu_io_all(
        &qemu_io_bin,
        &one,
        &[
            "write -P 0x11 0 4M",
            "write -P 0x22 4M 2M",
            "write -P 0x33 8M 64K",
            "discard 0 4M",
            "flush",
            "write -P 0x33 8M 64K",
            "read -P 0x22 4M 2M",
            "read -P 0x33 8M 64K",
            "read -P 0 0 64K",
        ],
        Duration::from_secs(60),
    );
    let refused = text.find("write failed: No space left on device");
    let discarded = text.find("discard 4194304/4194304 bytes at offset 0");
    let wrote = text.find("wrote 65536/65536 bytes at offset 8388608");
    assert!(
        refused.is_some() && refused < discarded && discarded < wrote,
        "expected: ENOSPC, discard, then the write; qemu-io said:\n{text}"
    );
    assert!(
        text.matches("read ").count() == 3 && !text.contains("Pattern verification failed"),
        "{text}"
    );
    shutdown.shutdown();
}

/// The private disk file of a device for a vDisk, relative to the store folder.
fn private_file(mac: &str, vdisk: &str) -> String {
    format!("private/{}/{vdisk}.vhd", mac.replace(':', ""))
}

#[test]
fn devices_open_only_what_is_assigned_to_them_over_nbd() {
    let qemu_io_bin = testkit::require_peer!("qemu-io");
    let nbdinfo = testkit::require_peer!("nbdinfo");
    const A: &str = "52:54:00:00:00:0a";
    const B: &str = "52:54:00:00:00:0b";
    const OFF: &str = "52:54:00:00:00:0c";
    const STRANGER: &str = "52:54:00:00:00:0d";
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = Arc::new(Store::open(&store_dir).unwrap());
    provision_core::create_vdisk(&store, "os", SIZE, "").unwrap();
    provision_core::create_vdisk(&store, "lab", SIZE, "").unwrap();
    for (mac, name) in [(A, "a"), (B, "b"), (OFF, "off")] {
        store
            .add_device(mac.parse().unwrap(), name, None, DeviceType::Production)
            .unwrap();
    }
    store.assign("a", "lab", Mode::Standard, None).unwrap();
    store.assign("b", "os", Mode::Private, None).unwrap();
    store.assign("off", "lab", Mode::Standard, None).unwrap();
    store
        .set_device(
            "off",
            &provision_core::DeviceUpdate {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
    let (addr, shutdown) = serve(sessions.clone());
    let url = |export: &str| format!("nbd://{addr}/{export}");
    // nbdinfo connects, negotiates the export and prints its size: refused or served.
    let served = |export: &str| {
        let out = testkit::run_output(
            Command::new(&nbdinfo).args(["--size", &url(export)]),
            Duration::from_secs(30),
        );
        out.status.success()
    };
    let a_os = export(&sessions, A, "os");
    let a_lab = export(&sessions, A, "lab");
    let b_os = export(&sessions, B, "os");
    let a_token = a_lab.rsplit('/').next().unwrap().to_owned();
    let b_token = b_os.rsplit('/').next().unwrap().to_owned();

    // B writes its private disk.
    assert!(all_ok(
        &qemu_io_bin,
        &url(&b_os),
        &["write -P 0xbb 0 64K", "flush", "read -P 0xbb 0 64K"]
    ));
    assert!(store_dir.join(private_file(B, "os")).is_file());

    // A names B's vDisk (private to B, not assigned to A): refused, whatever the
    // spelling; so are names that try to reach files, vDisks no one has, the names
    // of old (no token), and B's disk with A's token or none.
    for export in [
        a_os.clone(),
        format!("{A}/../{}/{a_token}", private_file(B, "os")),
        format!("{A}/lab/../os/{a_token}"),
        format!("{A}/os/"),
        format!("{A}/nothing/{a_token}"),
        format!("{}/os/{a_token}", A.replace(':', "-").to_uppercase()),
        format!("{B}/os/{a_token}"),
        format!("{B}/os/{}", Token::random()),
        format!("{B}/os"),
        format!("{B}/os/"),
        B.to_owned(),
        format!("{B}/os/{}", &b_token[..31]),
    ] {
        assert!(!served(&export), "`{export}` was served");
    }
    let (ok, text) = qemu_io_all(
        &qemu_io_bin,
        &url(&a_os),
        &["read 0 512"],
        Duration::from_secs(30),
    );
    assert!(!ok && !text.contains("read 512/512"), "{text}");
    assert!(
        !store_dir.join(private_file(A, "os")).exists(),
        "a refused open created a private disk"
    );
    // A's own vDisk is served.
    assert!(served(&a_lab));

    // Disabled and unknown devices are refused ...
    let off_lab = export(&sessions, OFF, "lab");
    assert!(!served(&off_lab));
    assert!(!served(&format!("{STRANGER}/lab/{a_token}")));
    assert!(!served("not-a-mac/lab") && !served(""));
    // ... until the device is enabled again; auto-add happens at a boot exchange, never
    // for an NBD client naming an unknown MAC.
    store
        .set_device(
            "off",
            &provision_core::DeviceUpdate {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(served(&off_lab));
    store
        .add_collection(
            "lobby",
            &provision_core::CollectionSettings {
                auto_add: true,
                default_vdisk: Some("lab".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(!served(&format!("{STRANGER}/lab/{}", Token::random())));
    assert!(
        store.device(STRANGER).is_err(),
        "an NBD client added a device"
    );

    // A's own private assignment of the same vDisk is A's own disk, not B's.
    store.assign("a", "os", Mode::Private, None).unwrap();
    assert!(
        all_ok(&qemu_io_bin, &url(&a_os), &["read -P 0 0 64K"]),
        "A sees B's private writes"
    );
    assert!(all_ok(
        &qemu_io_bin,
        &url(&a_os),
        &["write -P 0xaa 0 4K", "flush"]
    ));
    assert!(all_ok(
        &qemu_io_bin,
        &url(&b_os),
        &["write -P 0xb2 64K 4K", "flush", "read -P 0xbb 0 64K"]
    ));
    assert!(
        all_ok(
            &qemu_io_bin,
            &url(&a_os),
            &["read -P 0xaa 0 4K", "read -P 0 4K 60K", "read -P 0 64K 4K"]
        ),
        "A's private disk is not its own"
    );
    assert_ne!(private_file(A, "os"), private_file(B, "os"));
    assert!(store_dir.join(private_file(A, "os")).is_file());
    shutdown.shutdown();
}

/// Holds one libnbd connection to `url` (nbdsh): writes a pattern and flushes, says
/// `ready`, then on a line from stdin tries to read until the server closes the
/// connection (`closed`) or serves the read (`read`).
fn held_connection(nbdsh: &Path, url: &str) -> std::process::Child {
    let script = r#"
import sys, time
h.pwrite(b"\x42" * 4096, 0)
h.flush()
print("ready", flush=True)
sys.stdin.readline()
# The server must close the connection, not only fail its requests.
for _ in range(50):
    try:
        h.pread(4096, 0)
        print("read", flush=True)
        break
    except nbd.Error as e:
        if h.aio_is_dead() or h.aio_is_closed():
            print("closed", flush=True)
            break
        time.sleep(0.2)
else:
    print("requests fail but the connection stays", flush=True)
"#;
    // Debian's python3, which has the nbd module, first in PATH.
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    Command::new(nbdsh)
        .env("PATH", path)
        .args(["-u", url, "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child`'s next stdout line (bounded by the test's time limit).
fn next_line(reader: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

#[test]
fn a_new_boot_closes_the_old_boots_connections() {
    use std::io::{BufReader, Write};
    let nbdsh = testkit::require_peer!("nbdsh");
    let qemu_io_bin = testkit::require_peer!("qemu-io");
    const SEAT: &str = "52:54:00:00:00:21";
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    provision_core::create_vdisk(&store, "lab", SIZE, "").unwrap();
    store
        .add_device(SEAT.parse().unwrap(), "seat", None, DeviceType::Production)
        .unwrap();
    store.assign("seat", "lab", Mode::Standard, None).unwrap();
    let sessions = Sessions::new(store, SessionSettings::default()).unwrap();
    let (addr, shutdown) = serve(sessions.clone());
    let first = format!("nbd://{addr}/{}", export(&sessions, SEAT, "lab"));

    // The device writes, then powers off without a goodbye: its connection stays.
    let mut held = held_connection(&nbdsh, &first);
    let mut out = BufReader::new(held.stdout.take().unwrap());
    assert_eq!(next_line(&mut out).trim(), "ready");
    // A reconnect with the boot's token (within the grace period) sees the cache.
    assert!(all_ok(&qemu_io_bin, &first, &["read -P 0x42 0 4K"]));

    // Its next boot: the old connection is closed by the server, the old token
    // refused, the new boot's disk clean.
    let seat: Mac = SEAT.parse().unwrap();
    let new = sessions.start_boot(seat, BootCause::Dhcp, None).unwrap();
    assert_eq!((new.sessions_ended, new.caches_dropped), (1, 1));
    held.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let after = next_line(&mut out);
    assert!(
        after.starts_with("closed"),
        "the old boot's connection was still served: {after}"
    );
    held.wait().unwrap();
    assert!(
        !all_ok(&qemu_io_bin, &first, &["read 0 4K"]),
        "the old token still opens"
    );
    let second = format!("nbd://{addr}/{}", export(&sessions, SEAT, "lab"));
    assert!(
        all_ok(&qemu_io_bin, &second, &["read -P 0 0 4K"]),
        "the new boot is not clean"
    );
    shutdown.shutdown();
}

/// Drops `path` from the page cache (GNU dd's documented way).
fn evict(path: &Path) {
    testkit::run(
        Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0"]),
    );
}

#[test]
fn every_nbd_read_counts_once_in_the_device_statistics() {
    use nbd_proto::client::handshake::ClientConfig;
    use nbd_proto::driver::client::Client;

    let qemu_img = testkit::require_peer!("qemu-img");
    let qemu_io_bin = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let base = lab_base(dir.path(), &qemu_img, &qemu_io_bin);
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    store.add_vdisk("lab", SIZE, "", "lab/v0.vhd").unwrap();
    let mac = Mac([0x52, 0x54, 0, 0, 0, 1]);
    store
        .add_device(mac, "seat-1", None, DeviceType::Production)
        .unwrap();
    store.assign("seat-1", "lab", Mode::Standard, None).unwrap();
    let sessions = Sessions::new(store, SessionSettings::default()).unwrap();
    let (addr, shutdown) = serve(sessions.clone());
    let name = export(&sessions, "52:54:00:00:00:01", "lab");
    let counted = || {
        let usage = sessions.usage();
        let stats = usage.iter().find(|u| u.mac == mac).unwrap().stats;
        (stats.reads, stats.read_bytes)
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The base's file (its first MiB), the write cache's RAM (64 KiB at 2 MiB)
        // and unwritten zeros, each small and large, alone and together.
        let reads: &[(u64, u32)] = &[
            (0, 4096),
            (2 << 20, 4096),
            (3 << 20, 4096),
            (4096, 64 << 10),
            (0, 256 << 10),
            ((1 << 20) - 8192, 64 << 10),
            ((2 << 20) - 4096, 128 << 10),
            (0, 1 << 20),
            (0, SIZE as u32),
        ];
        for structured in [false, true] {
            let client = Client::connect(
                addr,
                ClientConfig {
                    export: name.clone(),
                    structured,
                    base_allocation: false,
                },
            )
            .await
            .unwrap();
            client
                .write(2 << 20, &vec![0xc1; 64 << 10], 0)
                .await
                .unwrap();
            for cold in [false, true] {
                for &(offset, len) in reads {
                    if cold {
                        evict(&base);
                    }
                    let before = counted();
                    let data = client.read(offset, len).await.unwrap();
                    assert_eq!(data.len(), len as usize);
                    let after = counted();
                    assert_eq!(
                        (after.0 - before.0, after.1 - before.1),
                        (1, u64::from(len)),
                        "READ of {len} at {offset} (structured {structured}, cold {cold}): \
                         reads and bytes counted"
                    );
                }
            }
            client.disconnect().await.unwrap();
        }
    });
    shutdown.shutdown();
}
