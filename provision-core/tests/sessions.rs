//! Sessions over real image files: standard-mode write caches, their lifetime, quotas.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use provision_core::{
    BootCause, DeviceType, ErrorKind, Mac, Mode, Session, SessionMode, SessionSettings, Sessions,
    Store, Token,
};
use vhd::Disk;

mod common;
use common::open;

const SIZE: u64 = 8 << 20;

fn mac(n: u8) -> Mac {
    Mac([0x52, 0x54, 0, 0, 0, n])
}

/// A store with vDisk `lab` whose base is a dynamic VHD written by qemu-img holding
/// the byte pattern 0x5a in its first MiB.
fn lab_store(dir: &std::path::Path, qemu_img: &std::path::Path) -> Arc<Store> {
    let raw = dir.join("base.raw");
    let mut bytes = vec![0u8; SIZE as usize];
    bytes[..1 << 20].fill(0x5a);
    std::fs::write(&raw, &bytes).unwrap();
    std::fs::create_dir_all(dir.join("store/lab")).unwrap();
    testkit::run(
        Command::new(qemu_img)
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
            .arg(dir.join("store/lab/v0.vhd")),
    );
    let store = Arc::new(Store::open(&dir.join("store")).unwrap());
    store.add_vdisk("lab", SIZE, "", "lab/v0.vhd").unwrap();
    for n in 1..=2 {
        store
            .add_device(mac(n), &format!("seat-{n}"), None, DeviceType::Production)
            .unwrap();
        store
            .assign(&format!("seat-{n}"), "lab", Mode::Standard, None)
            .unwrap();
    }
    store
}

/// Starts the device's next boot; returns how many write caches it dropped.
fn reboot(sessions: &Sessions, mac: Mac) -> usize {
    common::reboot(sessions, mac).caches_dropped
}

/// The folder and store of [`lab_store`]; the test returns when qemu-img is missing.
macro_rules! lab {
    () => {{
        let qemu_img = testkit::require_peer!("qemu-img");
        let dir = tempfile::tempdir().unwrap();
        let store = lab_store(dir.path(), &qemu_img);
        (dir, store)
    }};
}

/// Writes `chunk` after `chunk` from offset 0 until a write fails: where, and why.
fn write_until_full(disk: &Session, chunk: &[u8]) -> (u64, vhd::Error) {
    let mut offset = 0;
    loop {
        match disk.write_at(chunk, offset) {
            Ok(()) => offset += chunk.len() as u64,
            Err(e) => return (offset, e),
        }
        assert!(offset < SIZE, "the quota never applied");
    }
}

fn read(disk: &impl std::ops::Deref<Target = Session>, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    disk.read_at(&mut buf, offset).unwrap();
    buf
}

#[test]
fn standard_mode_writes_are_private_to_a_boot() {
    let (_dir, store) = lab!();
    let sessions = Sessions::new(store, SessionSettings::default()).unwrap();

    let one = open(&sessions, mac(1), "lab").unwrap();
    let two = open(&sessions, mac(2), "lab").unwrap();
    assert_eq!(one.info().mode, SessionMode::Standard);
    assert_eq!(read(&one, 4096, 4), [0x5a; 4]);
    one.write_at(b"seat one", 4096).unwrap();
    assert_eq!(read(&one, 4096, 8), b"seat one");
    assert_eq!(
        read(&two, 4096, 4),
        [0x5a; 4],
        "another device sees the base"
    );
    assert_eq!(sessions.list().len(), 2);

    // A reconnect within the grace period finds the cache again.
    drop(one);
    let again = open(&sessions, mac(1), "lab").unwrap();
    assert_eq!(read(&again, 4096, 8), b"seat one");
    drop(again);

    // The next boot starts clean, and the base file never changed.
    assert_eq!(reboot(&sessions, mac(1)), 1);
    let rebooted = open(&sessions, mac(1), "lab").unwrap();
    assert_eq!(read(&rebooted, 4096, 4), [0x5a; 4]);
    assert!(sessions.file_in_use("lab/v0.vhd"));
    drop((rebooted, two));
    assert!(sessions.list().is_empty());
}

#[test]
fn caches_expire_after_the_grace_period() {
    let (_dir, store) = lab!();
    let settings = SessionSettings {
        grace: Duration::from_secs(60),
        ..Default::default()
    };
    let sessions = Sessions::new(store, settings).unwrap();

    let session = open(&sessions, mac(1), "lab").unwrap();
    session.write_at(&[1; 512], 0).unwrap();
    assert_eq!(
        sessions.expire(Instant::now() + Duration::from_secs(3600)),
        0,
        "attached caches stay"
    );
    drop(session);
    assert_eq!(sessions.expire(Instant::now() + Duration::from_secs(30)), 0);
    assert_eq!(sessions.expire(Instant::now() + Duration::from_secs(61)), 1);
    // The boot's cache is gone: its reconnect is refused, never served the bare version.
    let expired = open(&sessions, mac(1), "lab").unwrap_err();
    assert_eq!(expired.kind(), ErrorKind::Refused, "{expired}");
    assert!(expired.to_string().contains("expired"), "{expired}");
    reboot(&sessions, mac(1));
    let fresh = open(&sessions, mac(1), "lab").unwrap();
    assert_eq!(read(&fresh, 0, 4), [0x5a; 4]);
}

#[test]
fn a_full_write_cache_says_no_space_and_others_go_on() {
    let (_dir, store) = lab!();
    let settings = SessionSettings {
        cache_ram_bytes: 64 << 10,
        cache_quota_bytes: 256 << 10,
        durable_caches: false,
        ..Default::default()
    };
    let sessions = Sessions::new(store, settings).unwrap();

    let one = open(&sessions, mac(1), "lab").unwrap();
    let two = open(&sessions, mac(2), "lab").unwrap();
    let chunk = vec![0xee; 64 << 10];
    let (offset, err) = write_until_full(&one, &chunk);
    assert_eq!(err.kind(), vhd::ErrorKind::NoSpace, "{err}");
    assert!(offset >= 192 << 10, "quota hit too early, at {offset}");
    assert_eq!(
        read(&one, 0, 2),
        [0xee; 2],
        "data written before the quota stays"
    );
    two.write_at(&chunk, 0).unwrap();
    assert_eq!(read(&two, 0, 2), [0xee; 2]);
}

#[test]
fn trim_gives_a_full_durable_cache_its_room_back() {
    let (dir, store) = lab!();
    let settings = SessionSettings {
        cache_quota_bytes: 5 << 20,
        durable_caches: true,
        ..Default::default()
    };
    let sessions = Sessions::new(store, settings).unwrap();
    let one = open(&sessions, mac(1), "lab").unwrap();
    // 2 MiB blocks: the third block takes the cache past 5 MiB; from then on only
    // sectors it holds may be written.
    let chunk = vec![0xee; 1 << 20];
    let (offset, err) = write_until_full(&one, &chunk);
    assert_eq!(err.kind(), vhd::ErrorKind::NoSpace, "{err}");
    assert_eq!(offset, 5 << 20, "the third block was the last");
    one.flush().unwrap();
    let cache = cache_files(dir.path());
    assert_eq!(cache.len(), 1, "one durable cache: {cache:?}");
    let len = std::fs::metadata(&cache[0]).unwrap().len();

    // The device deletes files and trims what they held: two whole blocks come back.
    one.trim(0, 4 << 20).unwrap();
    one.flush().unwrap();
    assert_eq!(
        read(&one, 0, 2),
        [0x5a; 2],
        "trimmed ranges read the base again"
    );
    one.write_at(&chunk, 6 << 20).unwrap();
    one.write_at(&chunk, 5 << 20).unwrap();
    one.write_at(&chunk, 0).unwrap();
    assert_eq!(read(&one, 5 << 20, 2), [0xee; 2]);
    assert_eq!(read(&one, 4 << 20, 2), [0xee; 2], "untrimmed data stays");
    assert_eq!(
        std::fs::metadata(&cache[0]).unwrap().len(),
        len,
        "the new blocks took the freed slots: the cache file did not grow"
    );
    // And the quota still holds: three blocks again, and a fourth is refused.
    let again = one.write_at(&chunk, 2 << 20).unwrap_err();
    assert_eq!(again.kind(), vhd::ErrorKind::NoSpace, "{again}");
}

/// The durable write caches under `dir` (`<vdisk>.boot<N>.vhd`), at most three levels
/// down from the store.
fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut folders = vec![(dir.to_path_buf(), 0)];
    while let Some((folder, depth)) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && depth < 4 {
                folders.push((path, depth + 1));
            } else if path.to_string_lossy().contains(".boot")
                && path.extension().is_some_and(|e| e == "vhd")
            {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn devices_open_only_what_is_assigned_to_them() {
    let (_dir, store) = lab!();
    store
        .add_vdisk("other", SIZE, "", "lab/v0-other.vhd")
        .unwrap();
    store
        .add_device(mac(3), "seat-3", None, DeviceType::Production)
        .unwrap();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();

    let unassigned = open(&sessions, mac(1), "other").unwrap_err();
    assert_eq!(unassigned.kind(), ErrorKind::Refused, "{unassigned}");
    let nothing = open(&sessions, mac(3), "lab").unwrap_err();
    assert!(nothing.to_string().contains("not assigned"), "{nothing}");
    assert_eq!(nothing.kind(), ErrorKind::Refused, "{nothing}");
    let unknown = sessions.open(mac(9), "lab", &Token::random()).unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::Refused, "{unknown}");
    store
        .set_device(
            "seat-2",
            &provision_core::DeviceUpdate {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        open(&sessions, mac(2), "lab").unwrap_err().kind(),
        ErrorKind::Refused
    );
}

#[test]
fn a_session_belongs_to_one_boot() {
    let (_dir, store) = lab!();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
    let first = sessions
        .start_boot(mac(1), BootCause::Dhcp, None)
        .unwrap()
        .boot;

    // Connections of the boot share its session; another device's token, a random
    // one or another device's MAC open nothing.
    let one = sessions.open(mac(1), "lab", &first.token).unwrap();
    let joined = sessions.open(mac(1), "lab", &first.token).unwrap();
    assert!(Arc::ptr_eq(&one, &joined));
    drop(joined);
    one.write_at(b"first boot", 0).unwrap();
    for (device, token) in [(mac(1), Token::random()), (mac(2), first.token)] {
        let refused = sessions.open(device, "lab", &token).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Refused, "{refused}");
    }

    // The device powers off without a goodbye: its connection still holds the session
    // when it boots again. The new boot ends it and starts clean.
    let second = sessions.start_boot(mac(1), BootCause::Dhcp, None).unwrap();
    assert_eq!((second.sessions_ended, second.caches_dropped), (1, 1));
    assert!(one.is_ended());
    assert!(
        one.read_at(&mut [0; 4], 0).is_err(),
        "an ended session still reads"
    );
    assert!(
        one.write_at(b"late", 0).is_err(),
        "an ended session still writes"
    );
    let stale = sessions.open(mac(1), "lab", &first.token).unwrap_err();
    assert!(stale.to_string().contains("token"), "{stale}");
    let clean = sessions.open(mac(1), "lab", &second.boot.token).unwrap();
    assert_eq!(read(&clean, 0, 4), [0x5a; 4]);
    assert_eq!(clean.info().boot, second.boot.number);
    drop(one);
    assert_eq!(
        sessions.list().len(),
        1,
        "the ended session is gone from the list"
    );

    // The mode is resolved at each boot: switched to private, the next boot writes a
    // private disk, which the boot after it finds again.
    store.assign("seat-1", "lab", Mode::Private, None).unwrap();
    assert_eq!(
        clean.info().mode,
        SessionMode::Standard,
        "the running boot keeps its mode"
    );
    for round in 0..2 {
        let boot = sessions
            .start_boot(mac(1), BootCause::Dhcp, None)
            .unwrap()
            .boot;
        let private = sessions.open(mac(1), "lab", &boot.token).unwrap();
        assert_eq!(private.info().mode, SessionMode::Private);
        if round == 0 {
            private.write_at(b"persists", 0).unwrap();
        } else {
            assert_eq!(read(&private, 0, 8), b"persists");
        }
    }
    assert!(clean.is_ended());
}

#[test]
fn attach_secrets_join_the_boot_or_start_one() {
    let (_dir, store) = lab!();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
    let secret = store.rotate_attach_secret("seat-1").unwrap();

    // No boot yet: the secret starts one.
    let vm = sessions.open(mac(1), "lab", &secret).unwrap();
    let boot = sessions.current_boot(mac(1)).unwrap().unwrap();
    assert_eq!(boot.cause, BootCause::Attach);
    vm.write_at(b"vm data", 0).unwrap();
    // A second connection, and a reconnect within the grace period, join it.
    assert!(Arc::ptr_eq(
        &vm,
        &sessions.open(mac(1), "lab", &secret).unwrap()
    ));
    drop(vm);
    let again = sessions.open(mac(1), "lab", &secret).unwrap();
    assert_eq!(read(&again, 0, 7), b"vm data");
    // Another device's secret opens nothing of this one.
    let other = store.rotate_attach_secret("seat-2").unwrap();
    assert!(sessions.open(mac(1), "lab", &other).is_err());
    // A rotated secret stops working.
    store.rotate_attach_secret("seat-1").unwrap();
    assert!(sessions.open(mac(1), "lab", &secret).is_err());
}

#[test]
fn usage_counts_requests_of_open_and_ended_sessions() {
    let (_dir, store) = lab!();
    let sessions = Sessions::new(store, SessionSettings::default()).unwrap();

    let one = open(&sessions, mac(1), "lab").unwrap();
    read(&one, 0, 1000);
    one.write_at(&[3; 4096], 8192).unwrap();
    assert!(
        one.read_at(&mut [0; 16], SIZE).is_err(),
        "a read past the end succeeded"
    );
    drop(one);
    let again = open(&sessions, mac(1), "lab").unwrap();
    read(&again, 0, 24);

    let usage = sessions.usage();
    assert_eq!(usage.len(), 1);
    let u = &usage[0];
    assert_eq!(
        (u.device.as_str(), u.vdisk.as_str(), u.open_sessions),
        ("seat-1", "lab", 1)
    );
    assert_eq!((u.stats.reads, u.stats.read_bytes), (3, 1024));
    assert_eq!(
        (u.stats.writes, u.stats.write_bytes, u.stats.errors),
        (1, 4096, 1)
    );
    assert!(u.cache_bytes >= 4096, "cache holds {} bytes", u.cache_bytes);
}

#[test]
fn leftover_files_are_deleted_only_when_nothing_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = Arc::new(Store::open(&store_dir).unwrap());
    provision_core::create_vdisk(&store, "os", 1 << 20, "").unwrap();
    for (n, name, device_type, mode) in [
        (1, "maint", DeviceType::Maintenance, Mode::Standard),
        (2, "tester", DeviceType::Test, Mode::Standard),
        (3, "private-tester", DeviceType::Test, Mode::Private),
    ] {
        store.add_device(mac(n), name, None, device_type).unwrap();
        store.assign(name, "os", mode, None).unwrap();
    }
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
    let v1 = provision_core::new_version(&store, "os", "").unwrap();
    let maint = open(&sessions, mac(1), "os").unwrap();
    maint.write_at(&[0x33; 4096], 0).unwrap();
    drop(maint);
    store.promote("os").unwrap(); // test

    // A standard session and a private disk over version 1.
    let tester = open(&sessions, mac(2), "os").unwrap();
    assert_eq!(tester.info().version, 1);
    let private = open(&sessions, mac(3), "os").unwrap();
    assert_eq!(private.info().mode, SessionMode::Private);
    private.write_at(&[0x77; 4096], 4096).unwrap();
    drop(private);

    // Version 1 is removed while they use it; a crash left a partial file.
    assert_eq!(store.remove_newest_version("os").unwrap().file, v1.file);
    std::fs::write(store_dir.join("os/v7.vhd.partial"), b"half a file").unwrap();
    let leftovers = provision_core::leftover_files(&store).unwrap();
    assert_eq!(leftovers, [v1.file.as_str(), "os/v7.vhd.partial"]);

    // The caller decides what is in use; everything is, nothing goes.
    let all_busy = provision_core::clean_leftover_files(&store, &|_| true).unwrap();
    assert_eq!(
        (all_busy.removed.len(), all_busy.kept),
        (0, leftovers.clone())
    );

    // The sessions keep version 1 (read by `tester`); the partial file goes.
    let cleanup = sessions.clean_leftover_files().unwrap();
    assert_eq!(cleanup.removed, ["os/v7.vhd.partial"]);
    assert_eq!(cleanup.kept, [v1.file.as_str()]);
    assert_eq!(read(&tester, 0, 4), [0x33; 4]);

    // No session reads it now, but the private disk still does: kept.
    drop(tester);
    assert_eq!(reboot(&sessions, mac(2)), 1);
    assert!(!sessions.file_in_use(&v1.file));
    let cleanup = sessions.clean_leftover_files().unwrap();
    assert_eq!((cleanup.removed.len(), cleanup.kept.len()), (0, 1));
    let private = open(&sessions, mac(3), "os").unwrap();
    assert_eq!(read(&private, 0, 4), [0x33; 4]);
    assert_eq!(read(&private, 4096, 4), [0x77; 4]);
    drop(private);

    // A private disk that cannot be opened stops the clean before it deletes anything.
    let private_file = store_dir.join("private/525400000003/os.vhd");
    let kept_aside = dir.path().join("os.vhd");
    std::fs::rename(&private_file, &kept_aside).unwrap();
    std::fs::write(&private_file, b"not a vhd").unwrap();
    std::fs::write(store_dir.join("os/v8.vhd.partial"), b"junk").unwrap();
    let err = sessions.clean_leftover_files().unwrap_err();
    assert!(err.to_string().contains("private"), "{err}");
    assert!(store_dir.join("os/v8.vhd.partial").exists());
    assert!(store_dir.join(&v1.file).exists());

    // Once the private disk is gone as well, version 1's file is deleted.
    std::fs::remove_file(&private_file).unwrap();
    let cleanup = sessions.clean_leftover_files().unwrap();
    assert_eq!(cleanup.removed, [v1.file.as_str(), "os/v8.vhd.partial"]);
    assert!(cleanup.kept.is_empty());
    assert!(!store_dir.join(&v1.file).exists());
    assert!(provision_core::leftover_files(&store).unwrap().is_empty());
    assert!(kept_aside.exists());
}

#[test]
fn after_a_restart_a_cache_is_there_or_the_reconnect_is_refused() {
    let (_dir, store) = lab!();
    for durable in [true, false] {
        let settings = SessionSettings {
            durable_caches: durable,
            ..Default::default()
        };
        let sessions = Sessions::new(store.clone(), settings.clone()).unwrap();
        let boot = common::reboot(&sessions, mac(1)).boot;
        let session = sessions.open(mac(1), "lab", &boot.token).unwrap();
        session.write_at(b"flushed", 0).unwrap();
        session.flush().unwrap();
        drop((session, sessions));

        // The process restarts: the boot (and its token) is in the store.
        let sessions = Sessions::new(store.clone(), settings).unwrap();
        match sessions.open(mac(1), "lab", &boot.token) {
            Ok(session) => {
                assert!(durable, "a RAM cache came back after a restart");
                assert_eq!(read(&session, 0, 7), b"flushed");
            }
            Err(e) => {
                assert!(!durable, "a durable cache was lost: {e}");
                assert_eq!(e.kind(), ErrorKind::Refused);
                assert!(e.to_string().contains("restarted"), "{e}");
            }
        }
    }
}

#[test]
fn auto_added_devices_write_private_disks_within_the_quota() {
    let (_dir, store) = lab!();
    store
        .add_collection(
            "lobby",
            &provision_core::CollectionSettings {
                auto_add: true,
                default_vdisk: Some("lab".into()),
                default_mode: Mode::Private,
                ..Default::default()
            },
        )
        .unwrap();
    let stranger = mac(7);
    store.device_or_auto_add(stranger).unwrap();
    let settings = SessionSettings {
        cache_quota_bytes: 3 << 20,
        ..Default::default()
    };
    let sessions = Sessions::new(store, settings).unwrap();
    let disk = open(&sessions, stranger, "lab").unwrap();
    assert_eq!(disk.info().mode, SessionMode::Private);
    // 2 MiB blocks: the first two fit under 3 MiB of file, the third does not.
    let chunk = vec![0x77; 4096];
    disk.write_at(&chunk, 0).unwrap();
    disk.write_at(&chunk, 2 << 20).unwrap();
    let full = disk.write_at(&chunk, 4 << 20).unwrap_err();
    assert_eq!(full.kind(), vhd::ErrorKind::NoSpace, "{full}");
    // What it holds it may rewrite.
    disk.write_at(&[0x78; 4096], 0).unwrap();
    assert_eq!(read(&disk, 0, 2), [0x78; 2]);
}

#[test]
fn a_hypervisor_reattaching_after_a_restart_finds_its_durable_cache() {
    let (_dir, store) = lab!();
    let secret = store.rotate_attach_secret("seat-1").unwrap();
    let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
    let vm = sessions.open(mac(1), "lab", &secret).unwrap();
    vm.write_at(b"before the restart", 0).unwrap();
    vm.flush().unwrap();
    drop((vm, sessions));

    // provisiond restarts; QEMU reconnects with the same secret.
    let sessions = Sessions::new(store, SessionSettings::default()).unwrap();
    let vm = sessions.open(mac(1), "lab", &secret).unwrap();
    assert_eq!(read(&vm, 0, 18), b"before the restart");
}

#[test]
fn durable_caches_know_never_attached_from_expired_across_restarts() {
    let (_dir, store) = lab!();
    let settings = SessionSettings {
        grace: Duration::from_secs(60),
        ..Default::default()
    };
    // The device's boot began before this process (its DHCP exchange, then a restart):
    // it never attached, so its first open makes its cache.
    let boot = store.start_boot(mac(1), BootCause::Dhcp, None).unwrap();
    let sessions = Sessions::new(store.clone(), settings.clone()).unwrap();
    let session = sessions.open(mac(1), "lab", &boot.token).unwrap();
    session.write_at(b"mine", 0).unwrap();
    drop(session);
    // Away past the grace period: the cache goes, and its reconnect stays refused,
    // after a restart too.
    assert_eq!(sessions.expire(Instant::now() + Duration::from_secs(61)), 1);
    drop(sessions);
    let sessions = Sessions::new(store, settings).unwrap();
    let refused = sessions.open(mac(1), "lab", &boot.token).unwrap_err();
    assert!(refused.to_string().contains("expired"), "{refused}");
}

/// A connection that ends while the device reconnects (its session is being dropped,
/// its durable cache being flushed) does not get the reconnect refused.
#[test]
fn a_reconnect_while_the_last_connection_closes_finds_its_cache() {
    let (_dir, store) = lab!();
    let sessions = Sessions::new(store, SessionSettings::default()).unwrap();
    let boot = sessions
        .start_boot(mac(1), BootCause::Dhcp, None)
        .unwrap()
        .boot;
    let mut session = sessions.open(mac(1), "lab", &boot.token).unwrap();
    session.write_at(b"kept", 0).unwrap();
    for round in 0..50 {
        // The old connection's session drops on another thread as the new one opens.
        let closing = std::thread::spawn(move || drop(session));
        let reopened = sessions.open(mac(1), "lab", &boot.token);
        closing.join().unwrap();
        session = reopened.unwrap_or_else(|e| panic!("round {round}: {e}"));
        let mut back = [0u8; 4];
        session.read_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"kept", "round {round}");
    }
}
