//! provisiond boots diskless machines from the network all the way (DESIGN.md boot path
//! 2): ProxyDHCP from its store beside a plain DHCP server, the device's iPXE script
//! (a menu of its two vDisks) and the kernel and initrd over its TFTP, the root file
//! system over its NBD. In network namespaces this test creates (see the lab module:
//! root only; every namespace is deleted at the end, even on failure).
//!
//! ```text
//!  ns <tag>s: br0 10.77.0.1 ── provisiond: ProxyDHCP (67, 4011, RAs) + TFTP (69) + NBD
//!     │                        (10809) + admin API (127.0.0.1:10810, for /metrics)
//!     ├─ tap0 ── QEMU (TCG): SeaBIOS + iPXE ROM (seat-1), or OVMF's own PXE (seat-3)
//!     ├─ veth ═ ns <tag>d: 10.77.0.2  dnsmasq, plain DHCP (addresses only, no PXE)
//!     └─ veth ═ ns <tag>c: no address  scripted PXE client (seat-2 and a stranger)
//! ```
//!
//! The guest is testkit's boot assets (testkit/scripts/boot-assets.sh): its initramfs
//! DHCPs again (vendor class `e2e-initramfs`, which provisiond must not answer),
//! attaches `nbdroot=` with nbd-client and mounts `root=/dev/nbd0p2`; the root's init
//! prints `BOOTED-FROM-VDISK hostname=<hostname=> root=...`, writes, prints `E2E-DONE`
//! and powers off.

mod lab;

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{CLIENT_IF, Lab, SERVER, console, field, firmware_dir};
use pxe::client::ClientProfile;
use pxe::wire::message::FLAG_BROADCAST;
use pxe::{Message, Op};
use testkit::ChildGuard;
use testkit::boot_assets::BootAssets;

/// The BIOS VM's MAC: device seat-1, vDisks `os` and `tools` (a menu).
const SEAT_1: &str = "52:54:00:77:00:01";
/// Device seat-2 (`os` only), played by the scripted client.
const SEAT_2: [u8; 6] = [0x52, 0x54, 0, 0x77, 0, 2];
/// The UEFI VM's MAC: device seat-3, vDisks `os` and `tools` (a menu).
const SEAT_3: &str = "52:54:00:77:00:03";
/// Where the admin API listens inside the server namespace.
const API: &str = "127.0.0.1:10810";
/// How long a VM may take from QEMU start to `E2E-DONE`.
/// provisiond's address pool in full DHCP mode.
const FULL_POOL: &str = "10.77.0.100-10.77.0.110/24";

const VM_LIMIT: Duration = Duration::from_secs(240);
/// The boot reads about 2 MB of the root over NBD (E2E.md §5); the handshake alone
/// reads nothing.
const ROOT_READ_BYTES: u64 = 1_000_000;

// ---------------------------------------------------------------- the scripted client

/// Broadcasts `discover` and prints every reply with its xid until `wait` passes or,
/// with `until_ours`, our server answered.
fn exchange(sock: &UdpSocket, mut discover: Message, wait: Duration, until_ours: bool) {
    discover.flags |= FLAG_BROADCAST;
    sock.send_to(&discover.encode(), (Ipv4Addr::BROADCAST, 67))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    while start.elapsed() < wait {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let Ok((n, std::net::SocketAddr::V4(from))) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(m) = Message::parse(&buf[..n]) else {
            continue;
        };
        if m.xid != discover.xid || m.op != Op::BootReply {
            continue;
        }
        println!(
            "REPLY from={from} xid={:#x} type={:?} yiaddr={} siaddr={} file={}",
            m.xid,
            m.message_type(),
            m.yiaddr,
            m.siaddr,
            m.file_name().unwrap_or_default()
        );
        if until_ours && *from.ip() == SERVER.parse::<Ipv4Addr>().unwrap() {
            return;
        }
    }
}

fn helper_seats() {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).unwrap();
    sock.set_broadcast(true).unwrap();
    let own = std::fs::read_to_string(format!("/sys/class/net/{CLIENT_IF}/address")).unwrap();
    let own = pxe::request::parse_mac(own.trim()).unwrap();
    // An unknown device (no collection has auto-add on): 3 s for every server to answer.
    exchange(
        &sock,
        ClientProfile::bios(own).discover(0x5eed_0001),
        Duration::from_secs(3),
        false,
    );
    // Seat-2's PXE ROM, then the iPXE it loaded.
    let rom = ClientProfile::bios(SEAT_2);
    exchange(
        &sock,
        rom.discover(0x5eed_0002),
        Duration::from_secs(5),
        true,
    );
    let mut ipxe = rom;
    ipxe.ipxe = true;
    exchange(
        &sock,
        ipxe.discover(0x5eed_0003),
        Duration::from_secs(5),
        true,
    );
}

/// Not a test: the scripted client, run by the test inside the client namespace.
#[test]
#[ignore = "run by the namespace test inside its client namespace"]
fn client_helper() {
    if lab::helper().as_deref() == Some("seats") {
        helper_seats();
    }
}

fn replies<'a>(lines: &'a [String], server: &str, xid: u32) -> Vec<&'a String> {
    let (from, xid) = (format!("REPLY from={server}:"), format!(" xid={xid:#x} "));
    lines
        .iter()
        .filter(|l| l.starts_with(&from) && l.contains(&xid))
        .collect()
}

// ---------------------------------------------------------------- the server side

/// Runs `provision --store STORE args`; panics with its output when it fails.
fn provision(store: &Path, args: &[&str]) {
    testkit::run(
        Command::new(env!("CARGO_BIN_EXE_provision"))
            .arg("--store")
            .arg(store)
            .args(["--actor", "e2e"])
            .args(args),
    );
}

/// The store, made with our tools: vDisk `os` (the assets' disk, converted to a
/// dynamic VHD by `vhd` and imported) and `tools` (empty); seat-1 and seat-3 have both
/// (a menu, `os` the default) and a personality hostname; seat-2 has `os`.
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
    provision(&store, &["vdisk", "create", "tools", "--size", "1M"]);
    for (mac, name, hostname) in [
        (SEAT_1, "seat-1", "diskless-1"),
        (SEAT_3, "seat-3", "diskless-3"),
    ] {
        provision(&store, &["device", "add", mac, name]);
        provision(&store, &["assign", name, "os"]);
        provision(&store, &["assign", name, "tools", "--mode", "private"]);
        let hostname = format!("hostname={hostname}");
        provision(&store, &["personality", "set", name, &hostname]);
    }
    provision(&store, &["device", "add", "52:54:00:77:00:02", "seat-2"]);
    provision(&store, &["assign", "seat-2", "os"]);
}

/// One lab with provisiond serving `store` on br0, dnsmasq handing out the addresses
/// and a tap for the VM. (Fields drop in order: the servers stop before the lab's
/// namespaces go.)
struct Site {
    _server: Option<ChildGuard>,
    _plain: Option<ChildGuard>,
    lab: Lab,
    qemu: PathBuf,
    curl: PathBuf,
    /// Serve the boot files over HTTP too (`[http]`): scripts load kernel and initrd
    /// from there.
    http: bool,
}

impl Site {
    /// The peers, boot assets and lab, with dnsmasq as the site's DHCP server unless
    /// provisiond is to be the only one (`full`); `None` (skip) when something is
    /// missing outside CI.
    fn new(tag: &str, full: bool) -> Option<(Site, BootAssets)> {
        let mut lab = Lab::new(tag)?;
        let qemu = testkit::peer("qemu-system-x86_64")?;
        let curl = testkit::peer("curl")?;
        let assets = testkit::boot_assets::boot_assets()?;
        let plain = if full { None } else { Some(lab.plain_dhcp()?) };
        lab.tap();
        store(&lab, &assets);
        let site = Site {
            _server: None,
            _plain: plain,
            lab,
            qemu,
            curl,
            http: false,
        };
        Some((site, assets))
    }

    /// Starts provisiond with a TFTP folder holding `boot/os/{vmlinuz,initrd.img}` and
    /// `extra_files` (name, source); with `full`, as the segment's only DHCP server
    /// (pool [`FULL_POOL`]).
    fn serve(&mut self, assets: &BootAssets, extra_files: &[(&str, &Path)], full: bool) {
        let lab = &self.lab;
        let tftp_root = lab.path("tftp");
        std::fs::create_dir_all(tftp_root.join("boot/os")).unwrap();
        std::fs::copy(&assets.kernel, tftp_root.join("boot/os/vmlinuz")).unwrap();
        std::fs::copy(&assets.initrd, tftp_root.join("boot/os/initrd.img")).unwrap();
        std::fs::write(tftp_root.join("undionly.kpxe"), b"not really iPXE").unwrap();
        for (name, source) in extra_files {
            std::fs::copy(source, tftp_root.join(name)).unwrap();
        }
        let config = lab.path("provisiond.toml");
        let http = if self.http {
            format!("[http]\nenabled = true\nlisten = \"{SERVER}:8080\"\n")
        } else {
            String::new()
        };
        let full_mode = if full {
            format!("mode = \"full\"\npool = \"{FULL_POOL}\"\nrouter = \"{SERVER}\"\n")
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                r#"store = "{store}"
[nbd]
listen = "{SERVER}:10809"
[tftp]
enabled = true
listen = "{SERVER}:69"
root = "{tftp}"
{http}[dhcp]
enabled = true
interface = "br0"
server_ip = "{SERVER}"
router_advertisements = true
{full_mode}[dhcp.boot_files]
bios = "undionly.kpxe"
efi-x64 = "snponly.efi"
efi-bc = "snponly.efi"
[boot]
nbd_server = "{SERVER}:10809"
kernel = "boot/{{vdisk}}/vmlinuz"
initrd = "boot/{{vdisk}}/initrd.img"
cmdline = "root=/dev/nbd0p2 console=ttyS0,115200 panic=1"
menu_timeout = 2
[api]
listen = "{API}"
"#,
                store = lab.path("store").display(),
                tftp = tftp_root.display(),
            ),
        )
        .unwrap();
        self._server = Some(lab.spawn(
            &lab.name("s"),
            "provisiond.log",
            Path::new(env!("CARGO_BIN_EXE_provisiond")),
            &["--config", config.to_str().unwrap()],
        ));
        if self.http {
            lab.wait_log("provisiond.log", "boot files served over HTTP");
        }
        for service in [
            "DHCP service listening",
            "TFTP service listening",
            "admin API listening",
            "NBD service listening",
        ] {
            lab.wait_log("provisiond.log", service);
        }
    }

    /// Boots the VM (`args`, with `-no-reboot`) until the guest prints `E2E-DONE`;
    /// returns its console and how long that took. Panics with the serial log when
    /// the guest fails, QEMU exits first, or [`VM_LIMIT`] passes.
    fn boot(&self, args: Vec<String>) -> (String, Duration) {
        let serial = self.lab.serial();
        // A serial log of an earlier boot would end this one before it began.
        let _ = std::fs::remove_file(&serial);
        let mut args = args;
        args.push("-no-reboot".to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = Instant::now();
        let mut vm = self
            .lab
            .spawn(&self.lab.name("s"), "qemu.log", &self.qemu, &args);
        let failure = loop {
            let text = console(&serial);
            if text.contains("E2E-DONE") {
                break None;
            }
            if let Some(marker) = [
                "E2E-FAILED",
                "E2E-INITRAMFS-FAILED",
                "Kernel panic",
                // SeaBIOS, and EDK2, after every boot option failed.
                "No bootable device",
                "No bootable option or device was found",
            ]
            .into_iter()
            .find(|m| text.contains(m))
            {
                break Some(format!("the guest printed `{marker}`"));
            }
            if let Ok(Some(status)) = vm.child().try_wait() {
                break Some(format!("QEMU exited with {status}"));
            }
            if start.elapsed() > VM_LIMIT {
                break Some(format!("no E2E-DONE within {VM_LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let took = start.elapsed();
        // Let the guest power off (it has nothing left to do but sync); QEMU is
        // killed by its guard otherwise.
        let off = Instant::now();
        while failure.is_none()
            && off.elapsed() < Duration::from_secs(30)
            && matches!(vm.child().try_wait(), Ok(None))
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(vm);
        let text = console(&serial);
        if let Some(why) = failure {
            panic!(
                "VM: {why} after {took:.1?}\n--- serial log {} ---\n{text}",
                serial.display()
            );
        }
        (text, took)
    }

    /// The console without the kernel's own messages (`[ seconds] ...`): firmware,
    /// iPXE, initramfs and root init lines, for the test's output.
    fn summary(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with('[') && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The admin API's `/metrics`, read inside the server namespace.
    fn metrics(&self) -> String {
        self.lab.run_in(
            &self.lab.name("s"),
            &self.curl,
            &["-sf", &format!("http://{API}/metrics")],
        )
    }
}

/// The value of `series` (name and labels exactly as written) in a metrics page.
fn metric(page: &str, series: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no `{series}` in /metrics:\n{page}"))
}

/// What every full boot shows: the menu of the device's two vDisks, the default booted
/// after the timeout with kernel and initrd from our TFTP and the root over our NBD,
/// the personality's hostname; the initramfs's own DHCP left to dnsmasq (or, `full`,
/// answered with an address only).
fn check_boot(site: &Site, mac: &str, device: &str, hostname: &str, text: &str, full: bool) {
    let log = site.lab.log("provisiond.log");
    assert!(
        text.contains(&format!("provision: choose a vDisk for {device}")),
        "the script's menu title:\n{text}"
    );
    assert!(
        text.contains("os (standard)") && text.contains("tools (private)"),
        "{text}"
    );
    // Nobody chose: the default entry was booted after the timeout, its kernel and
    // initrd those of the version it boots (the vDisk image's FAT partition 1 carries
    // them), loaded under the boot's own path `provision/<mac>/<token>/os/<file>`.
    let menu = text.find("provision: choose a vDisk").unwrap();
    // iPXE prints `<path>... ok`, with percentages between when the transfer is slow.
    // The console wraps a long path: the per-boot folder is checked on its own.
    let loaded = |name: &str| {
        let at = text.find(&format!("/os/{name}..."))?;
        // The 80-column console may wrap `ok` itself: join the lines after the path.
        let after: String = text[at..]
            .chars()
            .skip(name.len() + 7)
            .take(200)
            .filter(|c| !matches!(c, '\n' | '\r'))
            .collect();
        let status = after.split('/').next()?;
        status.contains("ok").then_some(at)
    };
    assert!(
        text.contains(&format!("provision/{}/", mac.replace(':', "-"))),
        "the kernel and initrd came from the boot's provision/{mac}/<token>/ folder:\n{text}"
    );
    let kernel = loaded("vmlinuz");
    let initrd = loaded("initrd.img");
    assert!(
        kernel.is_some_and(|k| k > menu) && initrd.is_some_and(|i| i > menu),
        "iPXE loaded provision/{mac}/<token>/os/vmlinuz and initrd.img after the menu:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "BOOTED-FROM-VDISK hostname={hostname} root=/dev/nbd0p2"
        )),
        "{text}"
    );
    assert!(
        log.contains(&format!("file=provision/{mac}.ipxe")),
        "provisiond offered the device's script:\n{log}"
    );
    for file in ["vmlinuz", "initrd.img"] {
        let (served, how) = if site.http {
            ("HTTP boot file", "HTTP")
        } else {
            ("transfer complete", "TFTP")
        };
        assert!(
            log.lines().any(|l| l.contains(served)
                && l.contains(&format!("file=provision/{}/", mac.replace(':', "-")))
                && l.contains(&format!("/os/{file}"))),
            "provisiond's {how} served the version's {file}:\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("transmission") && l.contains(&format!("export={mac}/os"))),
        "the initramfs attached {mac}/os over provisiond's NBD:\n{log}"
    );
    // The initramfs's own DHCP (vendor class e2e-initramfs) is no PXE client: a proxy
    // stays silent; a full server gives it an address and no boot file.
    let initramfs = |l: &&str| {
        if full {
            l.contains("kind=Some(Ack)") && l.contains("file=\"\"")
        } else {
            l.contains("not answering: not a PXE")
        }
    };
    assert!(
        log.lines()
            .filter(|l| l.contains(&format!("mac={mac}")))
            .any(|l| initramfs(&l)),
        "the initramfs's DHCP (full mode: {full}):\n{log}"
    );
    assert!(
        log.contains("router solicitation answered"),
        "no router advertisement sent:\n{log}"
    );
    let page = site.metrics();
    let labels = format!("{{device=\"{device}\",mac=\"{mac}\",vdisk=\"os\"}}");
    let read = metric(&page, &format!("provision_device_read_bytes_total{labels}"));
    let written = metric(
        &page,
        &format!("provision_device_write_bytes_total{labels}"),
    );
    assert!(
        read >= ROOT_READ_BYTES,
        "{device} read only {read} bytes over NBD:\n{page}"
    );
    assert!(
        written >= 1 << 20,
        "the guest writes 1 MiB, provisiond saw {written} bytes:\n{page}"
    );
    let over_tftp = if site.http { 1 } else { 3 };
    assert!(
        metric(&page, "provision_tftp_transfers_total") >= over_tftp,
        "the script (and without [http] kernel and initrd) over TFTP:\n{page}"
    );
    eprintln!("{device}: {read} bytes read and {written} written over NBD");
}

// ---------------------------------------------------------------- the tests

/// dnsmasq hands out the addresses; provisiond answers the PXE clients of its devices
/// (and nobody else) with iPXE or, for iPXE, the device's script. QEMU's iPXE ROM
/// (SeaBIOS) shows seat-1's menu of its two vDisks, boots the default after 2 s and
/// runs Linux with its root on provisiond's NBD.
#[test]
fn qemu_bios_pxe_menu_then_linux_root_over_nbd() {
    let _slot = lab::vm_slot();
    let test_start = Instant::now();
    let Some((mut site, assets)) = Site::new("pdb", false) else {
        return;
    };
    let c = site.lab.attach("c", CLIENT_IF, None);
    site.serve(&assets, &[], false);

    // The scripted client: an unknown device gets nothing from us (its address from
    // dnsmasq); seat-2's PXE ROM gets iPXE, its iPXE gets seat-2's script.
    let lines = site.lab.client(&c, "seats");
    assert!(
        replies(&lines, SERVER, 0x5eed_0001).is_empty(),
        "provisiond answered an unknown device:\n{}",
        lines.join("\n")
    );
    assert!(
        !replies(&lines, "10.77.0.2", 0x5eed_0001).is_empty(),
        "dnsmasq did not answer the unknown device (is the lab working?):\n{}",
        lines.join("\n")
    );
    let rom = replies(&lines, SERVER, 0x5eed_0002);
    let rom = rom
        .first()
        .unwrap_or_else(|| panic!("no offer to seat-2's ROM: {lines:?}"));
    assert_eq!(field(rom, "type"), "Some(Offer)");
    assert_eq!(
        field(rom, "yiaddr"),
        "0.0.0.0",
        "a proxy hands out no address"
    );
    assert_eq!(field(rom, "siaddr"), SERVER);
    assert_eq!(field(rom, "file"), "undionly.kpxe");
    let ipxe = replies(&lines, SERVER, 0x5eed_0003);
    let ipxe = ipxe
        .first()
        .unwrap_or_else(|| panic!("no offer to seat-2's iPXE: {lines:?}"));
    assert_eq!(field(ipxe, "file"), "provision/52:54:00:77:00:02.ipxe");
    assert!(
        site.lab
            .log("provisiond.log")
            .contains("refused by the boot policy: unknown or disabled device"),
        "{}",
        site.lab.log("provisiond.log")
    );

    // QEMU's own PXE ROM (iPXE in the e1000 option ROM) as seat-1.
    let (text, took) = site.boot(site.lab.bios_vm_args(SEAT_1, 384));
    eprintln!(
        "seat-1 (BIOS) reached E2E-DONE {took:.1?} after QEMU started; console without \
         kernel messages:\n{}",
        Site::summary(&text)
    );
    assert!(
        lab::address_from_plain_dhcp(&text),
        "the address comes from dnsmasq (10.77.0.50-60):\n{text}"
    );
    check_boot(&site, SEAT_1, "seat-1", "diskless-1", &text, false);
    eprintln!("test took {:.1?}", test_start.elapsed());
}

/// The same BIOS boot with `[http]` on: the script (over TFTP) has iPXE load kernel
/// and initrd from provisiond's HTTP service. Prints the seconds from QEMU's start to
/// the guest's marker, beside the TFTP boot's line of the test above.
#[test]
fn qemu_bios_kernel_and_initrd_over_http() {
    let _slot = lab::vm_slot();
    let Some((mut site, assets)) = Site::new("pdh", false) else {
        return;
    };
    site.http = true;
    site.serve(&assets, &[], false);
    let (text, took) = site.boot(site.lab.bios_vm_args(SEAT_1, 384));
    eprintln!(
        "seat-1 (BIOS, kernel and initrd over HTTP) reached E2E-DONE {took:.1?} after QEMU \
         started; console without kernel messages:\n{}",
        Site::summary(&text)
    );
    assert!(
        // iPXE writes the MAC's colons percent-encoded in URLs.
        text.contains(&format!(
            "http://{SERVER}:8080/provision/{}/",
            SEAT_1.replace(':', "-")
        )),
        "iPXE fetched the version's kernel over HTTP:\n{text}"
    );
    check_boot(&site, SEAT_1, "seat-1", "diskless-1", &text, false);
}

/// OVMF (EDK2's own PXE client on virtio-net, no option ROM) gets `snponly.efi` from
/// provisiond's proxy offer and TFTP; that iPXE gets seat-3's script, shows its menu,
/// boots the default vDisk after 2 s, and Linux runs with its root on provisiond's NBD.
#[test]
fn qemu_uefi_pxe_then_ipxe_then_linux_root_over_nbd() {
    let _slot = lab::vm_slot();
    let test_start = Instant::now();
    let Some(ovmf) = firmware_dir("OVMF_DIR", "/usr/share/OVMF", "OVMF_CODE_4M.fd", "ovmf") else {
        return;
    };
    let Some(ipxe) = firmware_dir("IPXE_DIR", "/usr/lib/ipxe", "snponly.efi", "ipxe") else {
        return;
    };
    let Some((mut site, assets)) = Site::new("pdu", false) else {
        return;
    };
    site.serve(
        &assets,
        &[("snponly.efi", &ipxe.join("snponly.efi"))],
        false,
    );

    let (text, took) = site.boot(site.lab.uefi_vm_args(&ovmf, SEAT_3, 512));
    eprintln!(
        "seat-3 (UEFI) reached E2E-DONE {took:.1?} after QEMU started; console without \
         kernel messages:\n{}",
        Site::summary(&text)
    );
    let log = site.lab.log("provisiond.log");
    assert!(
        log.lines().any(|l| l.contains("reply sent")
            && l.contains(&format!("mac={SEAT_3}"))
            && l.contains("file=\"snponly.efi\"")),
        "the firmware got snponly.efi from provisiond:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("transfer complete") && l.contains("file=snponly.efi")),
        "provisiond's TFTP served snponly.efi:\n{log}"
    );
    check_boot(&site, SEAT_3, "seat-3", "diskless-3", &text, false);
    eprintln!("test took {:.1?}", test_start.elapsed());
}

/// On an isolated segment provisiond is the only DHCP server: every client gets an
/// address from its pool (unknown devices and the initramfs's own DHCP client too, but
/// no boot file), known devices their boot files; the leases are kept in the store.
#[test]
fn full_dhcp_mode_gives_addresses_and_boots_a_device() {
    let _slot = lab::vm_slot();
    let Some((mut site, assets)) = Site::new("pdf", true) else {
        return;
    };
    let c = site.lab.attach("c", CLIENT_IF, None);
    site.serve(&assets, &[], true);
    let in_pool = |line: &str| {
        field(line, "yiaddr")
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.octets()[..3] == [10, 77, 0] && (100..=110).contains(&a.octets()[3]))
    };

    let lines = site.lab.client(&c, "seats");
    let unknown = replies(&lines, SERVER, 0x5eed_0001);
    let unknown = unknown
        .first()
        .unwrap_or_else(|| panic!("no address for an unknown device: {lines:?}"));
    assert!(in_pool(unknown), "{unknown}");
    assert_eq!(
        field(unknown, "file"),
        "",
        "an unknown device gets no boot file"
    );
    let rom = replies(&lines, SERVER, 0x5eed_0002);
    let rom = rom
        .first()
        .unwrap_or_else(|| panic!("no offer to seat-2's ROM: {lines:?}"));
    assert!(in_pool(rom), "{rom}");
    assert_eq!(field(rom, "file"), "undionly.kpxe");

    let (text, took) = site.boot(site.lab.bios_vm_args(SEAT_1, 384));
    eprintln!("seat-1 (BIOS, full DHCP) reached E2E-DONE {took:.1?} after QEMU started");
    assert!(
        text.lines()
            .any(|l| l.starts_with("net0: 10.77.0.10") || l.starts_with("net0: 10.77.0.110")),
        "the address comes from provisiond's pool {FULL_POOL}:\n{text}"
    );
    check_boot(&site, SEAT_1, "seat-1", "diskless-1", &text, true);
    let leases = std::fs::read_to_string(site.lab.path("store").join("dhcp-leases"))
        .expect("the lease file in the store");
    assert!(leases.contains("bound"), "{leases}");
}

/// The previous boots the guest counted on its root (`E2E-PREVIOUS-BOOTS count=N`).
fn previous_boots(text: &str) -> u32 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("E2E-PREVIOUS-BOOTS count=")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no E2E-PREVIOUS-BOOTS line:\n{text}"))
}

/// A device that powers off without a goodbye (`poweroff -f`: the kernel's NBD client
/// sends no DISC, the TCP connection is left half-open) boots clean the next time: its
/// DHCP exchange starts a new boot, which closes the old connection and drops its write
/// cache. Switched to private mode, the device gets a private disk at its next boot,
/// which it finds again at the boot after.
#[test]
fn a_powered_off_device_boots_clean_and_mode_changes_apply_at_its_next_boot() {
    let _slot = lab::vm_slot();
    let test_start = Instant::now();
    let Some((mut site, assets)) = Site::new("pdo", false) else {
        return;
    };
    site.serve(&assets, &[], false);
    let seat_2 = "52:54:00:77:00:02";
    let sessions = || {
        site.lab.run_in(
            &site.lab.name("s"),
            &site.curl,
            &["-sf", &format!("http://{API}/v1/sessions")],
        )
    };
    let boot = |what: &str| {
        let (text, took) = site.boot(site.lab.bios_vm_args(seat_2, 384));
        eprintln!("seat-2, {what}: E2E-DONE {took:.1?} after QEMU started");
        text
    };

    let first = boot("first boot");
    assert_eq!(previous_boots(&first), 0, "{first}");
    // Powered off: the server still holds the boot's session (nothing told it).
    assert!(sessions().contains("seat-2"), "{}", sessions());

    let second = boot("after a power-off without goodbye");
    assert_eq!(
        previous_boots(&second),
        0,
        "the standard-mode device saw its last boot's writes"
    );
    let log = site.lab.log("provisiond.log");
    assert!(
        log.contains("session ended by the device's new boot")
            && log.contains("the export's session ended; closing the connection"),
        "the old boot's session and connection were not ended:\n{log}"
    );

    provision(
        &site.lab.path("store"),
        &["assign", "seat-2", "os", "--mode", "private"],
    );
    let third = boot("switched to private");
    assert_eq!(
        previous_boots(&third),
        0,
        "a new private disk starts from the vDisk"
    );
    let fourth = boot("private, again");
    assert_eq!(
        previous_boots(&fourth),
        1,
        "the private disk did not persist"
    );
    let log = site.lab.log("provisiond.log");
    assert!(
        log.lines()
            .filter(|l| l.contains("session opened") && l.contains("device=seat-2"))
            .filter(|l| l.contains("mode=Private"))
            .count()
            >= 2,
        "{log}"
    );
    eprintln!("test took {:.1?}", test_start.elapsed());
}
