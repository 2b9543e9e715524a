//! Kernels and initrds that follow the version: a vDisk whose version 1 carries another
//! kernel and initrd than version 0 (FAT boot partitions built by sfdisk, mkfs.fat and
//! mtools), served by a provisiond started from this library. Over HTTP with curl, as
//! iPXE fetches them: the device's script names its boot's per-version files, and a
//! test device boots version 1's after promote to test while production boots version
//! 0's; after promote to production and rollback, production boots version 0's again.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use provision_core::{DeviceType, Mac, Mode, Store};
use testkit::kernel_disks::fat_mbr_disk;

const PRODUCTION: &str = "52:54:00:78:00:01";
const TEST: &str = "52:54:00:78:00:02";
/// What the scripts call the HTTP service (not where the test reaches it).
const ADVERTISED: &str = "http://127.0.0.1:8080/";

fn curl(url: &str) -> (u16, Vec<u8>) {
    let curl = testkit::find_program("curl").expect("checked by require_peer!");
    let out = Command::new(curl)
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20"])
        .arg(url)
        .output()
        .unwrap();
    let mut body = out.stdout;
    let at = body.iter().rposition(|&b| b == b'\n').unwrap();
    let code = std::str::from_utf8(&body[at + 1..])
        .unwrap()
        .parse()
        .unwrap();
    body.truncate(at);
    (code, body)
}

/// Boots `mac` as iPXE would, over HTTP: its script, then the kernel and initrd the
/// script names (the script's paths on the advertised service, fetched from `http`).
fn boot(http: SocketAddr, mac: &str) -> (String, Vec<u8>, Vec<u8>) {
    let (code, script) = curl(&format!("http://{http}/provision/{mac}.ipxe"));
    let script = String::from_utf8(script).unwrap();
    assert_eq!(code, 200, "{script}");
    let url_after = |prefix: &str| -> String {
        let line = script
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in\n{script}"));
        let url = line[prefix.len()..].split(' ').next().unwrap();
        let path = url
            .strip_prefix(ADVERTISED)
            .unwrap_or_else(|| panic!("{url} is not on {ADVERTISED}"));
        path.to_owned()
    };
    let kernel = url_after("kernel ");
    let initrd = url_after("initrd --name initrd.img ");
    let (code, k) = curl(&format!("http://{http}/{kernel}"));
    assert_eq!(code, 200, "{kernel}");
    let (code, i) = curl(&format!("http://{http}/{initrd}"));
    assert_eq!(code, 200, "{initrd}");
    (kernel, k, i)
}

/// Writes the raw image `raw` over the whole of the VHD `vhd` (as a maintenance
/// device installing a new kernel would write its version).
fn write_image(vhd: &Path, raw: &Path) {
    let disk = vhd::open_disk(vhd, false).unwrap();
    disk.write_at(&std::fs::read(raw).unwrap(), 0).unwrap();
    disk.flush().unwrap();
}

#[test]
fn the_kernel_follows_promote_and_rollback() {
    testkit::require_peer!("curl");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let Some(v0_image) = fat_mbr_disk(
        &root.join("v0.raw"),
        &[
            ("vmlinuz", b"KERNEL-OF-V0"),
            ("initrd.img", b"INITRD-OF-V0"),
        ],
    ) else {
        return;
    };
    let Some(v1_image) = fat_mbr_disk(
        &root.join("v1.raw"),
        &[
            ("vmlinuz", b"KERNEL-OF-V1"),
            ("initrd.img", b"INITRD-OF-V1"),
        ],
    ) else {
        return;
    };
    std::fs::create_dir_all(root.join("tftp/boot/lab")).unwrap();
    std::fs::write(root.join("tftp/boot/lab/vmlinuz"), b"CONFIGURED-KERNEL").unwrap();
    std::fs::write(root.join("tftp/boot/lab/initrd.img"), b"CONFIGURED-INITRD").unwrap();
    let store = Store::open(&root.join("store")).unwrap();
    provision_core::import_vdisk(&store, "lab", &v0_image, "", &mut |_, _| {}).unwrap();
    for (mac, name, kind) in [
        (PRODUCTION, "seat-prod", DeviceType::Production),
        (TEST, "seat-test", DeviceType::Test),
    ] {
        let mac: Mac = mac.parse().unwrap();
        store.add_device(mac, name, None, kind).unwrap();
        store.assign(name, "lab", Mode::Standard, None).unwrap();
    }
    std::fs::write(
        root.join("provisiond.toml"),
        "store = \"store\"\n[nbd]\nlisten = \"127.0.0.1:0\"\n\
         [tftp]\nroot = \"tftp\"\n\
         [http]\nenabled = true\nlisten = \"127.0.0.1:0\"\nadvertise = \"127.0.0.1:8080\"\n\
         [api]\nenabled = false\n[boot]\nnbd_server = \"127.0.0.1:10809\"\n",
    )
    .unwrap();
    let server = common::Provisiond::start(&root.join("provisiond.toml"));
    let http = server.http.unwrap();

    // Version 0 only: both boot its kernel, under their own boot's path.
    let (path, kernel, initrd) = boot(http, PRODUCTION);
    assert_eq!(
        (kernel.as_slice(), initrd.as_slice()),
        (&b"KERNEL-OF-V0"[..], &b"INITRD-OF-V0"[..])
    );
    assert!(
        path.starts_with(&format!("provision/{}/", PRODUCTION.replace(':', "-")))
            && path.ends_with("/lab/vmlinuz"),
        "{path}"
    );
    assert_eq!(boot(http, TEST).1, b"KERNEL-OF-V0");
    // The next boot of the device: the previous boot's path is refused (the token is
    // the boot's).
    assert_eq!(boot(http, PRODUCTION).1, b"KERNEL-OF-V0");
    let (code, _) = curl(&format!("http://{http}/{path}"));
    assert_ne!(code, 200, "the old boot's kernel path still served");

    // Version 1 carries another kernel; in maintenance, neither device boots it.
    let v1 = provision_core::new_version(&store, "lab", "new kernel").unwrap();
    write_image(&root.join("store").join(&v1.file), &v1_image);
    assert_eq!(boot(http, TEST).1, b"KERNEL-OF-V0");

    // Promoted to test: the test device boots version 1's, production version 0's.
    store.promote("lab").unwrap();
    let (_, kernel, initrd) = boot(http, TEST);
    assert_eq!(
        (kernel.as_slice(), initrd.as_slice()),
        (&b"KERNEL-OF-V1"[..], &b"INITRD-OF-V1"[..])
    );
    let (_, kernel, initrd) = boot(http, PRODUCTION);
    assert_eq!(
        (kernel.as_slice(), initrd.as_slice()),
        (&b"KERNEL-OF-V0"[..], &b"INITRD-OF-V0"[..])
    );

    // Promoted to production: production boots version 1's.
    store.promote("lab").unwrap();
    assert_eq!(boot(http, PRODUCTION).1, b"KERNEL-OF-V1");

    // Rolled back: production boots version 0's again (version 1 is back in test).
    store.rollback("lab").unwrap();
    let (_, kernel, initrd) = boot(http, PRODUCTION);
    assert_eq!(
        (kernel.as_slice(), initrd.as_slice()),
        (&b"KERNEL-OF-V0"[..], &b"INITRD-OF-V0"[..])
    );
    assert_eq!(boot(http, TEST).1, b"KERNEL-OF-V1");

    // A pin follows too: the production device pinned to version 1.
    store.pin("seat-prod", "lab", Some(1)).unwrap();
    assert_eq!(boot(http, PRODUCTION).1, b"KERNEL-OF-V1");
}

#[test]
fn a_version_without_a_kernel_boots_the_configured_paths() {
    testkit::require_peer!("curl");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("tftp/boot/lab")).unwrap();
    std::fs::write(root.join("tftp/boot/lab/vmlinuz"), b"CONFIGURED-KERNEL").unwrap();
    std::fs::write(root.join("tftp/boot/lab/initrd.img"), b"CONFIGURED-INITRD").unwrap();
    let empty = root.join("empty.raw");
    std::fs::write(&empty, vec![0u8; 4 << 20]).unwrap();
    let store = Store::open(&root.join("store")).unwrap();
    provision_core::import_vdisk(&store, "lab", &empty, "", &mut |_, _| {}).unwrap();
    let mac: Mac = PRODUCTION.parse().unwrap();
    store
        .add_device(mac, "seat-prod", None, DeviceType::Production)
        .unwrap();
    store
        .assign("seat-prod", "lab", Mode::Standard, None)
        .unwrap();
    std::fs::write(
        root.join("provisiond.toml"),
        "store = \"store\"\n[nbd]\nlisten = \"127.0.0.1:0\"\n\
         [tftp]\nroot = \"tftp\"\n\
         [http]\nenabled = true\nlisten = \"127.0.0.1:0\"\nadvertise = \"127.0.0.1:8080\"\n\
         [api]\nenabled = false\n[boot]\nnbd_server = \"127.0.0.1:10809\"\n",
    )
    .unwrap();
    let server = common::Provisiond::start(&root.join("provisiond.toml"));
    let (path, kernel, initrd) = boot(server.http.unwrap(), PRODUCTION);
    assert_eq!(path, "boot/lab/vmlinuz");
    assert_eq!(
        (kernel.as_slice(), initrd.as_slice()),
        (&b"CONFIGURED-KERNEL"[..], &b"CONFIGURED-INITRD"[..])
    );
}
