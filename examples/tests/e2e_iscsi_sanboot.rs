//! End to end over iSCSI (DESIGN.md boot path 4): QEMU's BIOS and iPXE ROM boot through
//! provisiond's ProxyDHCP and the device's iPXE script, which `sanboot`s the vDisk over
//! provisiond's iSCSI service (`[boot.methods] os = "sanboot"`); SeaBIOS boots the
//! disk's MBR, syslinux loads the kernel and initrd through the BIOS disk (iPXE's INT 13h
//! over iSCSI), and the initramfs attaches its root, the same LUN, with open-iscsi's
//! `iscsistart -b` from the iBFT iPXE left (initiator name, target and CHAP secret of
//! the boot): root over iSCSI, not NBD.
//!
//! ```text
//!  ns <tag>s: br0 10.77.0.1 ── provisiond: ProxyDHCP + TFTP (scripts) + iSCSI (3260)
//!     ├─ tap0 ── QEMU vm-a (TCG, SeaBIOS + iPXE ROM, e1000)
//!     ├─ tap1 ── QEMU vm-b
//!     └─ veth ═ ns <tag>d: 10.77.0.2  dnsmasq, plain DHCP (addresses only)
//! ```
//!
//! Two devices boot one standard-mode vDisk at once, each on its own write cache; vm-a
//! boots again and its writes are gone. Root only (network namespaces); each VM bounded
//! by [`VM_LIMIT`].

mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Lab, SERVER, console};
use testkit::ChildGuard;
use testkit::boot_assets::BootAssets;

const VM_A: (&str, &str, &str) = ("vm-a", "52:54:00:77:15:01", "tap0");
const VM_B: (&str, &str, &str) = ("vm-b", "52:54:00:77:15:02", "tap1");
/// The UEFI VM: OVMF's own PXE client on virtio-net, then iPXE (snponly.efi).
const VM_U: (&str, &str, &str) = ("vm-u", "52:54:00:77:15:03", "tap0");
/// QEMU start to `E2E-DONE`, two TCG VMs at once on a busy 2-core machine.
const VM_LIMIT: Duration = Duration::from_secs(420);

fn provision(store: &Path, args: &[&str]) {
    testkit::run(
        Command::new(env!("CARGO_BIN_EXE_provision"))
            .arg("--store")
            .arg(store)
            .args(["--actor", "e2e"])
            .args(args),
    );
}

/// The store: vDisk `os` (the assets' disk as a dynamic VHD) assigned to both VMs'
/// devices in standard mode.
fn store(lab: &Lab, assets: &BootAssets) {
    let store = lab.path("store");
    let vhd = lab.path("os.vhd");
    testkit::run(
        Command::new(env!("CARGO_BIN_EXE_vhd"))
            .arg("convert")
            .arg(&assets.disk_raw)
            .arg(&vhd)
            .args(["--to", "dynamic"]),
    );
    provision(&store, &["vdisk", "import", "os", vhd.to_str().unwrap()]);
    std::fs::remove_file(&vhd).unwrap();
    for (name, mac, _) in [VM_A, VM_B, VM_U] {
        provision(&store, &["device", "add", mac, name]);
        provision(&store, &["assign", name, "os"]);
    }
}

/// provisiond on br0: ProxyDHCP, TFTP (the scripts, and `snponly.efi` when given: UEFI
/// firmware's PXE client fetches it), iSCSI; `os` boots with sanboot.
fn serve(lab: &Lab, snponly: Option<&Path>) -> ChildGuard {
    let tftp = lab.path("tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    std::fs::write(tftp.join("undionly.kpxe"), b"not really iPXE").unwrap();
    if let Some(file) = snponly {
        std::fs::copy(file, tftp.join("snponly.efi")).unwrap();
    }
    let config = lab.path("provisiond.toml");
    std::fs::write(
        &config,
        format!(
            r#"store = "{store}"
[nbd]
listen = "{SERVER}:10809"
[iscsi]
enabled = true
listen = "{SERVER}:3260"
[tftp]
enabled = true
listen = "{SERVER}:69"
root = "{tftp}"
[dhcp]
enabled = true
interface = "br0"
server_ip = "{SERVER}"
router_advertisements = true
[dhcp.boot_files]
bios = "undionly.kpxe"
efi-x64 = "snponly.efi"
[boot]
nbd_server = "{SERVER}:10809"
[boot.methods]
os = "sanboot"
[api]
listen = "127.0.0.1:10810"
"#,
            store = lab.path("store").display(),
            tftp = tftp.display(),
        ),
    )
    .unwrap();
    let server = lab.spawn(
        &lab.name("s"),
        "provisiond.log",
        Path::new(env!("CARGO_BIN_EXE_provisiond")),
        &["--config", config.to_str().unwrap()],
    );
    for service in [
        "DHCP service listening",
        "TFTP service listening",
        "iSCSI service listening",
    ] {
        lab.wait_log("provisiond.log", service);
    }
    server
}

/// The firmware of a VM: SeaBIOS with QEMU's iPXE ROM, or OVMF (its folder).
#[derive(Clone, Copy)]
enum Firmware<'a> {
    Bios,
    Uefi(&'a Path),
}

/// QEMU arguments of a VM on `tap` with SMBIOS serial `name` (the guest's hostname):
/// BIOS (SeaBIOS console on the serial port, e1000 with QEMU's iPXE ROM, network boot)
/// or UEFI (OVMF, its variables copied; virtio-net without an option ROM, so EDK2's own
/// PXE client boots).
fn vm_args(
    lab: &Lab,
    (name, mac, tap): (&str, &str, &str),
    serial: &Path,
    firmware: Firmware<'_>,
) -> Vec<String> {
    if let Firmware::Uefi(ovmf) = firmware {
        let vars = lab.path(&format!("vars-{name}.fd"));
        std::fs::copy(ovmf.join("OVMF_VARS_4M.fd"), &vars).unwrap();
        return [
            "-machine",
            "q35,accel=tcg",
            "-m",
            "512",
            "-display",
            "none",
            "-serial",
            &format!("file:{}", serial.display()),
            "-netdev",
            &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
            "-drive",
            &format!(
                "if=pflash,format=raw,readonly=on,file={}",
                ovmf.join("OVMF_CODE_4M.fd").display()
            ),
            "-drive",
            &format!("if=pflash,format=raw,file={}", vars.display()),
            "-smbios",
            &format!("type=1,serial={name}"),
            "-no-reboot",
        ]
        .map(str::to_owned)
        .to_vec();
    }
    let sercon = lab.path("sercon.bin");
    std::fs::write(&sercon, [0xf8, 0x03]).unwrap();
    [
        "-machine",
        "pc,accel=tcg",
        "-m",
        "384",
        "-display",
        "none",
        "-serial",
        &format!("file:{}", serial.display()),
        "-netdev",
        &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
        "-device",
        &format!("e1000,netdev=n0,mac={mac}"),
        "-fw_cfg",
        &format!("name=etc/sercon-port,file={}", sercon.display()),
        "-boot",
        "n",
        "-smbios",
        &format!("type=1,serial={name}"),
        "-no-reboot",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Boots `vms` at once until each prints `E2E-DONE`; returns their consoles. Panics
/// with the consoles when a guest fails, a QEMU exits first, or [`VM_LIMIT`] passes.
fn boot(
    lab: &Lab,
    qemu: &Path,
    vms: &[(&str, &str, &str)],
    tag: &str,
    firmware: Firmware<'_>,
) -> Vec<String> {
    let serials: Vec<PathBuf> = vms
        .iter()
        .map(|(name, ..)| lab.path(&format!("serial-{name}-{tag}.txt")))
        .collect();
    let mut guards: Vec<ChildGuard> = vms
        .iter()
        .zip(&serials)
        .map(|(vm, serial)| {
            let args = vm_args(lab, *vm, serial, firmware);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lab.spawn(&lab.name("s"), &format!("qemu-{}.log", vm.0), qemu, &args)
        })
        .collect();
    let start = Instant::now();
    let mut done = vec![None; vms.len()];
    let failure = 'poll: loop {
        for (i, serial) in serials.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            let text = console(serial);
            if text.contains("E2E-DONE") {
                done[i] = Some(start.elapsed());
                continue;
            }
            for marker in [
                "E2E-FAILED",
                "E2E-INITRAMFS-FAILED",
                "Kernel panic",
                "No bootable device",
                "No bootable option or device was found",
                "Could not boot",
            ] {
                if text.contains(marker) {
                    break 'poll Some(format!("{} printed `{marker}`", vms[i].0));
                }
            }
            if let Ok(Some(status)) = guards[i].child().try_wait() {
                break 'poll Some(format!("{}'s QEMU exited with {status}", vms[i].0));
            }
        }
        if done.iter().all(Option::is_some) {
            break None;
        }
        if start.elapsed() > VM_LIMIT {
            break Some(format!("no E2E-DONE from every VM within {VM_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    // Let the guests power off (sync, poweroff -f); their guards kill them otherwise.
    let off = Instant::now();
    while failure.is_none()
        && off.elapsed() < Duration::from_secs(30)
        && guards
            .iter_mut()
            .any(|g| matches!(g.child().try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(guards);
    let texts: Vec<String> = serials.iter().map(|s| console(s)).collect();
    if let Some(why) = failure {
        let consoles: Vec<String> = vms
            .iter()
            .zip(&texts)
            .map(|(vm, t)| format!("--- serial console of {} ---\n{t}", vm.0))
            .collect();
        panic!(
            "{why} after {:.1?}\n{}\n{}",
            start.elapsed(),
            consoles.join("\n"),
            lab.log("provisiond.log")
        );
    }
    for (vm, took) in vms.iter().zip(&done) {
        eprintln!(
            "{} reached E2E-DONE {:.1?} after QEMU started",
            vm.0,
            took.unwrap()
        );
    }
    texts
}

/// The value after `key` on the console's line that starts with `marker`.
fn marker_value<'a>(text: &'a str, marker: &str, key: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| l.starts_with(marker))
        .unwrap_or_else(|| panic!("no `{marker}` line in\n{text}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no `{key}` in `{line}`"))
}

/// What every sanboot boot must show: iPXE booted the SAN disk, the initramfs found
/// the iBFT and mounted the LUN's root, the root init ran with its hostname.
fn check(name: &str, text: &str, previous_boots: &str) {
    for want in [
        "SAN device",
        "E2E-INITRAMFS ibft iqn.2026-01.org.provision:os",
        "E2E-INITRAMFS root=/dev/sda2",
    ] {
        assert!(text.contains(want), "{name}: `{want}` missing\n{text}");
    }
    assert_eq!(
        marker_value(text, "BOOTED-FROM-VDISK", "hostname="),
        name,
        "{text}"
    );
    assert_eq!(
        marker_value(text, "E2E-PREVIOUS-BOOTS", "count="),
        previous_boots,
        "{name}: {text}"
    );
}

#[test]
fn two_vms_sanboot_one_standard_vdisk_over_iscsi() {
    let _slot = lab::vm_slot();
    let test_start = Instant::now();
    let Some(mut lab) = Lab::new("isb") else {
        return;
    };
    let Some(qemu) = testkit::peer("qemu-system-x86_64") else {
        return;
    };
    let Some(curl) = testkit::peer("curl") else {
        return;
    };
    let Some(assets) = testkit::boot_assets::boot_assets() else {
        return;
    };
    let Some(_plain) = lab.plain_dhcp() else {
        return;
    };
    lab.tap();
    let s = lab.name("s");
    lab::ip(&["-n", &s, "tuntap", "add", "dev", "tap1", "mode", "tap"]);
    lab::ip(&["-n", &s, "link", "set", "tap1", "master", "br0", "up"]);
    store(&lab, &assets);
    let base = lab.path("store/os/v0.vhd");
    let base_before = std::fs::read(&base).unwrap();
    let _server = serve(&lab, None);

    eprintln!("step 1: vm-a and vm-b sanboot the standard vDisk at once");
    let texts = boot(&lab, &qemu, &[VM_A, VM_B], "1", Firmware::Bios);
    for ((name, ..), text) in [VM_A, VM_B].iter().zip(&texts) {
        check(name, text, "0");
    }
    eprintln!(
        "vm-a's console without kernel messages:\n{}",
        texts[0]
            .lines()
            .filter(|l| !l.starts_with('[') && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Each wrote its 1 MiB (and its boot log) into its own write cache.
    let metrics = lab.run_in(&s, &curl, &["-sf", "http://127.0.0.1:10810/metrics"]);
    for (_, mac, _) in [VM_A, VM_B] {
        let written: u64 = metrics
            .lines()
            .find(|l| {
                l.starts_with("provision_device_write_bytes_total{")
                    && l.contains(&format!("mac=\"{mac}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no write bytes of {mac}:\n{metrics}"));
        assert!(written >= 1 << 20, "{mac} wrote {written} bytes\n{metrics}");
    }
    let log = lab.log("provisiond.log");
    for (_, mac, _) in [VM_A, VM_B] {
        // iPXE's connection may end before the OS logs in (the guest's kernel answers
        // the server's segments of it with a reset): the OS then reopens the boot's
        // session, and its write cache, within the grace period.
        let opened: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("session opened") && l.contains(&format!("mac={mac}")))
            .collect();
        assert!(
            !opened.is_empty()
                && opened
                    .iter()
                    .all(|l| l.contains("boot=1 ") && l.contains("transport=\"iscsi\"")),
            "{mac}: sessions of one boot, over iSCSI\n{log}"
        );
        // iPXE's login, then the Linux initiator's from the iBFT.
        let logins = log
            .lines()
            .filter(|l| {
                l.contains("iSCSI login")
                    && l.contains(&format!(
                        "initiator=iqn.2026-01.org.provision.device:{}",
                        mac.replace(':', "-")
                    ))
                    && l.contains("session_type=Normal")
            })
            .count();
        assert!(logins >= 2, "{mac}: {logins} normal logins\n{log}");
    }

    eprintln!("step 2: vm-a boots again: a new boot, a fresh write cache");
    let texts = boot(&lab, &qemu, &[VM_A], "2", Firmware::Bios);
    check(VM_A.0, &texts[0], "0");
    assert_eq!(
        std::fs::read(&base).unwrap(),
        base_before,
        "the base changed"
    );
    eprintln!("test took {:.1?}", test_start.elapsed());
}

/// UEFI: OVMF's PXE client gets iPXE (`snponly.efi`) from provisiond, iPXE the device's
/// script, which sanboots the vDisk; iPXE's EFI SAN device starts the disk's
/// `\\EFI\\BOOT\\BOOTX64.EFI` (systemd-boot), which loads the kernel and initrd over
/// iSCSI; the kernel finds iPXE's iBFT among the ACPI tables and the initramfs mounts the
/// LUN's root as on BIOS.
#[test]
fn uefi_sanboot_over_iscsi() {
    let _slot = lab::vm_slot();
    let test_start = Instant::now();
    let Some(ovmf) = lab::firmware_dir("OVMF_DIR", "/usr/share/OVMF", "OVMF_CODE_4M.fd", "ovmf")
    else {
        return;
    };
    let Some(ipxe) = lab::firmware_dir("IPXE_DIR", "/usr/lib/ipxe", "snponly.efi", "ipxe") else {
        return;
    };
    let Some(mut lab) = Lab::new("isu") else {
        return;
    };
    let Some(qemu) = testkit::peer("qemu-system-x86_64") else {
        return;
    };
    let Some(assets) = testkit::boot_assets::boot_assets() else {
        return;
    };
    let Some(_plain) = lab.plain_dhcp() else {
        return;
    };
    lab.tap();
    store(&lab, &assets);
    let _server = serve(&lab, Some(&ipxe.join("snponly.efi")));
    let texts = boot(&lab, &qemu, &[VM_U], "1", Firmware::Uefi(&ovmf));
    check(VM_U.0, &texts[0], "0");
    eprintln!(
        "vm-u's console without kernel messages:\n{}",
        texts[0]
            .lines()
            .filter(|l| !l.starts_with('[') && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("test took {:.1?}", test_start.elapsed());
}
