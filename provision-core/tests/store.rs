//! The store's rules, through its public API, in memory and on disk.

use provision_core::{
    CollectionSettings, DeviceType, DeviceUpdate, ErrorKind, Mac, Mode, Store, VersionState,
    resolve_version,
};

fn mac(n: u8) -> Mac {
    Mac([0x52, 0x54, 0, 0, 0, n])
}

fn store_with_vdisk() -> Store {
    let store = Store::in_memory().unwrap();
    store
        .add_vdisk("lab", 1 << 30, "lab image", "lab/v0.vhd")
        .unwrap();
    store
}

fn states(store: &Store, vdisk: &str) -> Vec<VersionState> {
    store
        .versions(vdisk)
        .unwrap()
        .iter()
        .map(|v| v.state)
        .collect()
}

#[test]
fn version_life_cycle_promote_and_rollback() {
    use VersionState::*;
    let store = store_with_vdisk();
    assert_eq!(states(&store, "lab"), [Production]);

    let v1 = store.add_version("lab", "lab/v1.vhd", "updates").unwrap();
    assert_eq!((v1.number, v1.state), (1, Maintenance));
    let again = store
        .add_version("lab", "lab/v2.vhd", "too early")
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);

    assert_eq!(store.promote("lab").unwrap().state, Test);
    assert_eq!(states(&store, "lab"), [Production, Test]);
    let versions = store.versions("lab").unwrap();
    assert_eq!(
        resolve_version(&versions, DeviceType::Production, None),
        Some(0)
    );
    assert_eq!(resolve_version(&versions, DeviceType::Test, None), Some(1));

    assert_eq!(store.promote("lab").unwrap().state, Production);
    assert_eq!(states(&store, "lab"), [Superseded, Production]);
    assert_eq!(
        store.promote("lab").unwrap_err().kind(),
        ErrorKind::Conflict
    );

    let back = store.rollback("lab").unwrap();
    assert_eq!(back.number, 0);
    assert_eq!(states(&store, "lab"), [Production, Test]);
    assert_eq!(
        store.rollback("lab").unwrap_err().kind(),
        ErrorKind::Conflict
    );
}

#[test]
fn only_the_newest_non_production_version_can_be_removed() {
    let store = store_with_vdisk();
    assert_eq!(
        store.remove_newest_version("lab").unwrap_err().kind(),
        ErrorKind::Conflict
    );
    store.add_version("lab", "lab/v1.vhd", "").unwrap();
    let removed = store.remove_newest_version("lab").unwrap();
    assert_eq!(removed.file, "lab/v1.vhd");
    assert_eq!(store.versions("lab").unwrap().len(), 1);
}

#[test]
fn assignments_keep_order_and_the_first_is_the_default() {
    let store = store_with_vdisk();
    store
        .add_vdisk("tools", 1 << 20, "", "tools/v0.vhd")
        .unwrap();
    store
        .add_device(mac(1), "seat-01", None, DeviceType::Production)
        .unwrap();
    store
        .assign("seat-01", "lab", Mode::Standard, None)
        .unwrap();
    let list = store
        .assign("seat-01", "tools", Mode::Private, Some(0))
        .unwrap();
    let names: Vec<_> = list.iter().map(|a| a.vdisk.as_str()).collect();
    assert_eq!(names, ["tools", "lab"]);
    assert_eq!(list[0].mode, Mode::Private);

    let list = store.pin("seat-01", "lab", Some(0)).unwrap();
    assert_eq!(list[1].pinned_version, Some(0));
    assert_eq!(
        store.pin("seat-01", "lab", Some(9)).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    let list = store.unassign("52:54:00:00:00:01", "tools").unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        store.unassign("seat-01", "tools").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.remove_vdisk("lab").unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(store.remove_vdisk("tools").unwrap(), ["tools/v0.vhd"]);
}

#[test]
fn unknown_devices_are_refused_unless_auto_add_is_on() {
    let store = store_with_vdisk();
    let refused = store.device_or_auto_add(mac(9)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Refused);
    assert!(
        refused.to_string().contains("52:54:00:00:00:09"),
        "{refused}"
    );

    let settings = CollectionSettings {
        auto_add: true,
        default_device_type: DeviceType::Test,
        default_vdisk: Some("lab".into()),
        default_mode: Mode::Standard,
    };
    store.add_collection("lab-room", &settings).unwrap();
    let device = store.device_or_auto_add(mac(9)).unwrap();
    assert_eq!(device.collection.as_deref(), Some("lab-room"));
    assert_eq!(device.device_type, DeviceType::Test);
    assert_eq!(
        store.assignments("52:54:00:00:00:09").unwrap()[0].vdisk,
        "lab"
    );
    // The second boot finds the same device.
    assert_eq!(store.device_or_auto_add(mac(9)).unwrap().id, device.id);

    // Only one collection receives unknown devices.
    store
        .add_collection(
            "other",
            &CollectionSettings {
                auto_add: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(!store.collection("lab-room").unwrap().auto_add);
}

#[test]
fn disabled_devices_are_refused() {
    let store = store_with_vdisk();
    store
        .add_device(mac(2), "seat-02", None, DeviceType::Production)
        .unwrap();
    let update = DeviceUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    store.set_device("seat-02", &update).unwrap();
    assert_eq!(
        store.device_or_auto_add(mac(2)).unwrap_err().kind(),
        ErrorKind::Refused
    );
}

#[test]
fn names_and_macs_are_unique() {
    let store = store_with_vdisk();
    store
        .add_device(mac(1), "seat-01", None, DeviceType::Production)
        .unwrap();
    let dup_mac = store
        .add_device(mac(1), "seat-99", None, DeviceType::Production)
        .unwrap_err();
    let dup_name = store
        .add_device(mac(2), "seat-01", None, DeviceType::Production)
        .unwrap_err();
    let dup_vdisk = store.add_vdisk("lab", 1, "", "other.vhd").unwrap_err();
    for err in [dup_mac, dup_name, dup_vdisk] {
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    }
    assert_eq!(
        store.add_vdisk("a b", 1, "", "x.vhd").unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(
        store.add_vdisk("zero", 0, "", "x.vhd").unwrap_err().kind(),
        ErrorKind::Invalid
    );
}

#[test]
fn personality_is_bounded_per_device() {
    let store = store_with_vdisk();
    store
        .add_device(mac(1), "seat-01", None, DeviceType::Production)
        .unwrap();
    store
        .set_personality("seat-01", "hostname", Some("seat-01.lab"))
        .unwrap();
    store
        .set_personality("seat-01", "domain", Some("lab.example"))
        .unwrap();
    store.set_personality("seat-01", "domain", None).unwrap();
    assert_eq!(
        store.personality("seat-01").unwrap(),
        [("hostname".into(), "seat-01.lab".into())]
    );

    let big = "x".repeat(provision_core::PERSONALITY_LIMIT);
    let err = store
        .set_personality("seat-01", "blob", Some(&big))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(
        store
            .set_personality("seat-01", "a=b", Some("v"))
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
    assert_eq!(store.personality("seat-01").unwrap().len(), 1);
}

#[test]
fn a_failed_change_leaves_no_trace() {
    let store = store_with_vdisk().with_actor("alice");
    store
        .add_device(mac(1), "seat-01", None, DeviceType::Production)
        .unwrap();
    let before = store.audit_log(100).unwrap().len();
    assert!(
        store
            .assign("seat-01", "missing", Mode::Standard, None)
            .is_err()
    );
    assert!(
        store
            .add_device(
                mac(3),
                "seat-03",
                Some("no-such-collection"),
                DeviceType::Test
            )
            .is_err()
    );
    assert_eq!(store.audit_log(100).unwrap().len(), before);
    assert_eq!(
        store.device("seat-03").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let last = &store.audit_log(1).unwrap()[0];
    assert_eq!(
        (
            last.actor.as_str(),
            last.action.as_str(),
            last.subject.as_str()
        ),
        ("alice", "device.add", "seat-01")
    );
}

#[test]
fn the_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.add_vdisk("lab", 1 << 30, "", "lab/v0.vhd").unwrap();
        store
            .add_device(mac(1), "seat-01", None, DeviceType::Maintenance)
            .unwrap();
        store.assign("seat-01", "lab", Mode::Private, None).unwrap();
        store.add_version("lab", "lab/v1.vhd", "").unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(dir.path().join(provision_core::DATABASE_FILE).is_file());
    assert_eq!(
        store.device("seat-01").unwrap().device_type,
        DeviceType::Maintenance
    );
    assert_eq!(store.assignments("seat-01").unwrap()[0].mode, Mode::Private);
    assert_eq!(store.versions("lab").unwrap().len(), 2);
    assert_eq!(store.audit_log(10).unwrap().len(), 4);
}

#[test]
fn auto_add_is_bounded_in_rate_and_size() {
    use provision_core::{AutoAddLimits, CollectionSettings, ErrorKind, Mac};
    // A store whose collection `lobby` takes unknown devices in, within these limits.
    let lobby = |per_minute, max_devices| {
        let store = provision_core::Store::in_memory()
            .unwrap()
            .with_auto_add_limits(AutoAddLimits {
                per_minute,
                max_devices,
            });
        let settings = CollectionSettings {
            auto_add: true,
            ..Default::default()
        };
        store.add_collection("lobby", &settings).unwrap();
        store
    };
    let store = lobby(3, 5);
    let mac = |n: u8| Mac([2, 0, 0, 0, 0, n]);
    // A flood of made-up MACs: three are added, then the minute's limit refuses.
    for n in 1..=3 {
        store.device_or_auto_add(mac(n)).unwrap();
    }
    let refused = store.device_or_auto_add(mac(4)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Refused);
    assert!(refused.to_string().contains("last minute"), "{refused}");
    // Known devices still boot.
    store.device_or_auto_add(mac(1)).unwrap();

    // The collection's size limit, whatever the rate.
    let roomy = lobby(100, 2);
    roomy.device_or_auto_add(mac(1)).unwrap();
    roomy.device_or_auto_add(mac(2)).unwrap();
    let full = roomy.device_or_auto_add(mac(3)).unwrap_err();
    assert!(full.to_string().contains("holds 2 devices"), "{full}");
    assert_eq!(roomy.devices().unwrap().len(), 2);
}
