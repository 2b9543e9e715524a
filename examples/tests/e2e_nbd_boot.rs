//! End to end: real VMs (QEMU, TCG) boot a syslinux + ext4 disk streamed by `provisiond`
//! over NBD (boot path 1 of DESIGN.md, the hypervisor attaching `nbd://server/<mac>`).
//!
//! - `two_vms_share_a_standard_vdisk`: two standard-mode devices boot one vDisk at once,
//!   each with its own write cache; a new boot drops a device's cache, a reconnect within
//!   the grace period keeps it; a private-mode device keeps its writes across boots and a
//!   server restart; the base file never changes; `/metrics` counts what each did.
//! - `versions_maintenance_test_production`: a maintenance device writes version 1,
//!   promote shows it to test devices, then to production devices; rollback goes back.
//!
//! The guest (testkit/scripts/boot-assets.sh) prints `E2E-PREVIOUS-BOOTS count=N` (lines
//! in its boot log, so earlier boots whose writes it sees), `E2E-VERSION V` (from
//! /etc/e2e-version), `BOOTED-FROM-VDISK hostname=<SMBIOS serial>`, then writes and
//! powers off. Each VM is bounded by `e2e::VM_TIMEOUT`; its serial log is in the message
//! of any failure, and the test's folder is kept when it fails.

mod e2e;

use std::path::Path;
use std::time::Instant;

use e2e::{Provisiond, Vm, WorkDir, boot, boot_at_once, provision};

const VM_A: &str = "52:54:00:e2:e0:01";
const VM_B: &str = "52:54:00:e2:e0:02";
const VM_P: &str = "52:54:00:e2:e0:03";
const MAINT: &str = "52:54:00:e2:e1:01";
const TESTER: &str = "52:54:00:e2:e1:02";
const PROD: &str = "52:54:00:e2:e1:03";

/// A boot reads about 16 MB (E2E.md §4); anything above this is a real boot.
const BOOT_READ_BYTES: u64 = 10_000_000;

/// Settings for these tests: a grace period longer than any test, so that a VM started
/// again without a new boot surely reconnects to its write cache.
const CONFIG: &str = "[sessions]\ngrace_seconds = 3600\n";

/// The peers and assets, or `None` (after printing why) when a peer is missing outside CI.
fn prerequisites() -> Option<(std::path::PathBuf, testkit::boot_assets::BootAssets)> {
    let qemu = testkit::peer("qemu-system-x86_64")?;
    testkit::peer("timeout")?;
    let assets = testkit::boot_assets::boot_assets()?;
    Some((qemu, assets))
}

/// Converts the assets' disk to a dynamic VHD and imports it into `store` as vDisk `os`.
fn import_base(dir: &Path, store: &[&str], disk_raw: &Path) {
    let vhd = dir.join("os.vhd");
    e2e::convert_to_dynamic_vhd(disk_raw, &vhd);
    provision(
        store,
        &[
            "vdisk",
            "import",
            "os",
            vhd.to_str().unwrap(),
            "--description",
            "e2e busybox",
        ],
    );
}

/// The file of version `number` of vDisk `os`, relative to the store.
fn version_file(server: &Provisiond, number: u64) -> String {
    let versions = server.cli_json(&["version", "list", "os"]);
    versions
        .as_array()
        .and_then(|list| list.iter().find(|v| v["number"] == number))
        .and_then(|v| v["file"].as_str())
        .unwrap_or_else(|| panic!("no file of version {number} in {versions}"))
        .to_owned()
}

/// Bytes of the vDisk's base file (version 0) in the store.
fn base_file(server: &Provisiond, store_dir: &Path) -> Vec<u8> {
    std::fs::read(store_dir.join(version_file(server, 0))).unwrap()
}

#[test]
fn two_vms_share_a_standard_vdisk() {
    let Some((qemu, assets)) = prerequisites() else {
        return;
    };
    let _serial = e2e::one_at_a_time();
    let started = Instant::now();
    let work = WorkDir::new("e2e-standard");
    let dir = work.path();
    let store_dir = Provisiond::store_of(dir);
    let store = ["--store", store_dir.to_str().unwrap()];

    import_base(dir, &store, &assets.disk_raw);
    provision(&store, &["device", "add", VM_A, "vm-a"]);
    provision(&store, &["device", "add", VM_B, "vm-b"]);
    provision(&store, &["device", "add", VM_P, "vm-p"]);
    provision(&store, &["assign", "vm-a", "os"]);
    provision(&store, &["assign", "vm-b", "os", "--mode", "standard"]);
    provision(&store, &["assign", "vm-p", "os", "--mode", "private"]);

    let mut server = Provisiond::start(dir, CONFIG);
    let base_before = base_file(&server, &store_dir);
    // The hypervisor attaches each VM's disk with the device's attach secret.
    let vm_a = Vm::new("vm-a", &server.attach_export("vm-a", "os"));
    let vm_b = Vm::new("vm-b", &server.attach_export("vm-b", "os"));
    // The device's default vDisk, and the same one named explicitly (`/` encoded).
    let vm_p = Vm::new(
        "vm-p",
        &server.attach_export("vm-p", "os").replace('/', "%2F"),
    );

    eprintln!("step 1: vm-a and vm-b boot the standard vDisk at once");
    let booted = boot_at_once(&qemu, &server, &[vm_a.clone(), vm_b.clone()], "1");
    for (boot, name) in booted.iter().zip(["vm-a", "vm-b"]) {
        boot.check(
            "previous boots on a fresh write cache",
            boot.previous_boots(),
            0,
        );
        boot.check("hostname", boot.hostname(), name);
        boot.check("version", boot.version(), "0");
    }
    server.wait_sessions_closed("vm-a");
    server.wait_sessions_closed("vm-b");
    let metrics = server.metrics();
    for mac in [VM_A, VM_B] {
        let read = metrics.device("provision_device_read_bytes_total", mac);
        let written = metrics.device("provision_device_write_bytes_total", mac);
        let cache = metrics.device("provision_write_cache_bytes", mac);
        assert!(
            read > BOOT_READ_BYTES,
            "{mac} read only {read} bytes\n{}",
            metrics.0
        );
        assert!(
            written >= 1 << 20,
            "{mac} wrote only {written} bytes (the guest writes 1 MiB)\n{}",
            metrics.0
        );
        assert!(
            cache >= 1 << 20,
            "{mac}'s write cache holds {cache} bytes after its boot\n{}",
            metrics.0
        );
        assert_eq!(
            metrics.device("provision_device_errors_total", mac),
            0,
            "{}",
            metrics.0
        );
    }
    assert_eq!(
        metrics.value("provision_sessions{mode=\"standard\"}"),
        Some(0),
        "{}",
        metrics.0
    );

    eprintln!("step 2: vm-a boots anew (write cache dropped), vm-p boots its private disk");
    assert_eq!(
        server.new_boot("vm-a"),
        1,
        "vm-a had one write cache to drop"
    );
    assert_eq!(
        server.metrics().device("provision_write_cache_bytes", VM_A),
        0,
        "vm-a's cache survived its reset"
    );
    let booted = boot_at_once(&qemu, &server, &[vm_a.clone(), vm_p.clone()], "2");
    booted[0].check(
        "previous boots after a new boot (its writes must be gone)",
        booted[0].previous_boots(),
        0,
    );
    booted[1].check(
        "previous boots, first boot of a private disk",
        booted[1].previous_boots(),
        0,
    );
    booted[1].check("hostname", booted[1].hostname(), "vm-p");
    server.wait_sessions_closed("vm-a");
    server.wait_sessions_closed("vm-p");

    eprintln!(
        "step 3: vm-b starts again without a new boot (reconnect within the grace period), vm-p boots again"
    );
    let booted = boot_at_once(&qemu, &server, &[vm_b.clone(), vm_p.clone()], "3");
    booted[0].check(
        "previous boots when reconnecting to its write cache within the grace period",
        booted[0].previous_boots(),
        1,
    );
    booted[1].check(
        "previous boots, second boot of a private disk",
        booted[1].previous_boots(),
        1,
    );
    server.wait_sessions_closed("vm-b");
    server.wait_sessions_closed("vm-p");
    let metrics = server.metrics();
    let vm_p_read = metrics.device("provision_device_read_bytes_total", VM_P);
    assert!(
        vm_p_read > 2 * BOOT_READ_BYTES,
        "vm-p read {vm_p_read} bytes in two boots\n{}",
        metrics.0
    );
    assert_eq!(
        metrics.device("provision_write_cache_bytes", VM_P),
        0,
        "a private device has no write cache\n{}",
        metrics.0
    );

    eprintln!("step 4: provisiond restarts; vm-p boots a third time");
    server.restart();
    let booted = boot(&qemu, &server, &vm_p, "4");
    booted.check(
        "previous boots of a private disk after a server restart",
        booted.previous_boots(),
        2,
    );
    server.wait_sessions_closed("vm-p");
    let metrics = server.metrics();
    let read = metrics.device("provision_device_read_bytes_total", VM_P);
    assert!(
        read > BOOT_READ_BYTES && read < 2 * BOOT_READ_BYTES,
        "vm-p read {read} bytes in one boot after the restart\n{}",
        metrics.0
    );

    assert!(
        base_file(&server, &store_dir) == base_before,
        "the shared base file changed while devices booted from it"
    );
    // The private disk is a consistent child image of the base.
    let private = store_dir.join("private/525400e2e003/os.vhd");
    assert!(
        private.is_file(),
        "no private disk at {}",
        private.display()
    );
    e2e::vhd_check(&private);
    server.stop();
    eprintln!("two_vms_share_a_standard_vdisk: {:.1?}", started.elapsed());
}

#[test]
fn versions_maintenance_test_production() {
    let Some((qemu, assets)) = prerequisites() else {
        return;
    };
    let _serial = e2e::one_at_a_time();
    let started = Instant::now();
    let work = WorkDir::new("e2e-versions");
    let dir = work.path();
    let store_dir = Provisiond::store_of(dir);
    let store = ["--store", store_dir.to_str().unwrap()];

    import_base(dir, &store, &assets.disk_raw);
    for (mac, name, kind) in [
        (MAINT, "maint", "maintenance"),
        (TESTER, "tester", "test"),
        (PROD, "prod", "production"),
    ] {
        provision(&store, &["device", "add", mac, name, "--type", kind]);
        provision(&store, &["assign", name, "os", "--mode", "standard"]);
    }

    let mut server = Provisiond::start(dir, CONFIG);
    let maint = Vm::new("maint-set-version-1", &server.attach_export("maint", "os"));
    let tester = Vm::new("tester", &server.attach_export("tester", "os"));
    let prod = Vm::new("prod", &server.attach_export("prod", "os"));
    // Every boot is a new boot of its device, as a PXE boot would mark it.
    let fresh_boot = |vm: &Vm, name: &str, tag: &str| {
        server.new_boot(name);
        let booted = boot(&qemu, &server, vm, tag);
        server.wait_sessions_closed(name);
        booted
    };
    let state_of = |number: u64| {
        let versions = server.cli_json(&["version", "list", "os"]);
        versions
            .as_array()
            .and_then(|list| list.iter().find(|v| v["number"] == number))
            .and_then(|v| v["state"].as_str())
            .unwrap_or_else(|| panic!("no version {number} in {versions}"))
            .to_owned()
    };

    eprintln!("step 1: version 1, written by the maintenance device");
    server.cli(&["version", "new", "os", "--note", "e2e v1"]);
    assert_eq!(state_of(1), "maintenance");
    let booted = fresh_boot(&maint, "maint", "1");
    booted.check("version before its change", booted.version(), "0");
    booted.check(
        "the change it made",
        booted.marker("E2E-SET-VERSION "),
        Some("1"),
    );
    // It wrote into version 1's file itself, through no write cache.
    assert_eq!(
        server
            .metrics()
            .device("provision_write_cache_bytes", MAINT),
        0
    );
    let v1 = store_dir.join(version_file(&server, 1));
    let v1_size = std::fs::metadata(&v1).unwrap().len();
    assert!(
        v1_size > 1 << 20,
        "version 1 holds {v1_size} bytes after the maintenance boot wrote 1 MiB"
    );
    e2e::vhd_check(&v1);

    eprintln!("step 2: promoted to test: tester boots version 1, prod version 0");
    server.cli(&["version", "promote", "os"]);
    assert_eq!(state_of(1), "test");
    server.new_boot("tester");
    server.new_boot("prod");
    let booted = boot_at_once(&qemu, &server, &[tester.clone(), prod.clone()], "2");
    booted[0].check("tester's version", booted[0].version(), "1");
    booted[0].check(
        "previous boots on version 1 (the maintenance boot's)",
        booted[0].previous_boots(),
        1,
    );
    booted[1].check(
        "prod's version while 1 is in test",
        booted[1].version(),
        "0",
    );
    booted[1].check("prod's previous boots", booted[1].previous_boots(), 0);
    server.wait_sessions_closed("tester");
    server.wait_sessions_closed("prod");

    eprintln!("step 3: promoted to production: prod boots version 1");
    server.cli(&["version", "promote", "os"]);
    assert_eq!(state_of(1), "production");
    let booted = fresh_boot(&prod, "prod", "3");
    booted.check("prod's version after promotion", booted.version(), "1");

    eprintln!("step 4: rolled back: prod boots version 0");
    server.cli(&["version", "rollback", "os"]);
    assert_eq!(state_of(0), "production");
    let booted = fresh_boot(&prod, "prod", "4");
    booted.check("prod's version after rollback", booted.version(), "0");
    booted.check(
        "prod's previous boots on version 0",
        booted.previous_boots(),
        0,
    );

    let metrics = server.metrics();
    for mac in [MAINT, TESTER, PROD] {
        let read = metrics.device("provision_device_read_bytes_total", mac);
        assert!(
            read > BOOT_READ_BYTES,
            "{mac} read {read} bytes\n{}",
            metrics.0
        );
    }
    server.stop();
    eprintln!(
        "versions_maintenance_test_production: {:.1?}",
        started.elapsed()
    );
}
