//! provisiond answers PXE clients itself: ProxyDHCP from the store, beside a plain DHCP
//! server, in network namespaces this test creates (root only; every namespace is
//! deleted at the end, even on failure; only 10.77.x.x addresses).
//!
//! Topology (names carry the test's tag and PID):
//! ```text
//!  ns <tag>s: br0 10.77.0.1 ── provisiond: ProxyDHCP (67, 4011, RAs) + TFTP (69) + NBD
//!     ├─ tap0 ── QEMU (e1000 + its iPXE ROM, SeaBIOS, TCG, -boot n), device seat-1
//!     ├─ veth ═ ns <tag>d: 10.77.0.2  dnsmasq, plain DHCP (addresses only, no PXE)
//!     └─ veth ═ ns <tag>c: no address  scripted PXE client (this binary re-run there)
//! ```
//! The lab helpers are a trimmed copy of those in `pxe-serve_netns.rs`.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use provision_core::{DeviceType, Mac, Mode, Store, create_vdisk};
use pxe::client::ClientProfile;
use pxe::wire::message::FLAG_BROADCAST;
use pxe::{Message, Op};
use testkit::ChildGuard;

const SERVER: &str = "10.77.0.1";
const CLIENT_IF: &str = "vethc";
/// The VM's MAC: device seat-1, two vDisks assigned.
const SEAT_1: &str = "52:54:00:77:00:01";
/// Device seat-2 (one vDisk), played by the scripted client.
const SEAT_2: [u8; 6] = [0x52, 0x54, 0, 0x77, 0, 2];

/// Namespaces of one test; deleted on drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    dir: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    testkit::run(Command::new("ip").args(args));
}

impl Lab {
    /// The server namespace with br0 = 10.77.0.1/24, or `None` (skip) when the test
    /// cannot run here.
    fn new(tag: &str) -> Option<Lab> {
        if !testkit::is_root() {
            assert!(
                !testkit::in_ci(),
                "network namespace tests need root under CI=true"
            );
            eprintln!("SKIPPED: network namespace tests need root");
            return None;
        }
        testkit::peer("ip")?;
        let mut lab = Lab {
            prefix: format!("pd{tag}{}", std::process::id()),
            namespaces: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let s = lab.ns("s");
        ip(&[
            "-n",
            &s,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        ip(&["-n", &s, "addr", "add", "10.77.0.1/24", "dev", "br0"]);
        ip(&["-n", &s, "link", "set", "br0", "up"]);
        Some(lab)
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn ns(&mut self, suffix: &str) -> String {
        let name = self.name(suffix);
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A namespace on the bridge with `addr` (or none: a client with a device route).
    fn attach(&mut self, suffix: &str, ifname: &str, addr: Option<&str>) -> String {
        let ns = self.ns(suffix);
        let s = self.name("s");
        let port = format!("p{suffix}");
        ip(&[
            "link", "add", ifname, "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &s,
        ]);
        ip(&["-n", &s, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "link", "set", ifname, "up"]);
        match addr {
            Some(a) => ip(&["-n", &ns, "addr", "add", a, "dev", ifname]),
            None => ip(&["-n", &ns, "route", "add", "default", "dev", ifname]),
        }
        ns
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `program args` inside `ns` (exec'd: the guard's PID is the program's),
    /// stderr and stdout appended to `log`.
    fn spawn(&self, ns: &str, log: &str, program: &Path, args: &[&str]) -> ChildGuard {
        let mut line = format!("exec '{}'", program.display());
        for a in args {
            line.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        }
        line.push_str(&format!(" >>'{}' 2>&1", self.path(log).display()));
        ChildGuard::spawn(
            Command::new("ip")
                .args(["netns", "exec", ns, "sh", "-c", &line])
                .env("RUST_LOG", "pxe=debug,provision_core=debug,info"),
        )
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Waits (at most 15 s) until `log` contains `needle`.
    fn wait_log(&self, name: &str, needle: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if self.log(name).contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("`{needle}` not in {name} after 15 s:\n{}", self.log(name));
    }

    /// Runs the scripted client in namespace `ns` (at most 60 s); its `REPLY` lines.
    fn client(&self, ns: &str) -> Vec<String> {
        let exe = std::env::current_exe().unwrap();
        let out = testkit::run_output(
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(exe)
                .args([
                    "client_helper",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("PROVISIOND_PXE_HELPER", "1"),
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "client helper failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The harness prints "test client_helper ... " first, without a newline.
        stdout
            .lines()
            .filter_map(|l| l.find("REPLY ").map(|i| l[i..].to_owned()))
            .collect()
    }

    /// dnsmasq as the site's address-only DHCP server in its own namespace (10.77.0.2).
    fn plain_dhcp(&mut self, dnsmasq: &Path) -> ChildGuard {
        let d = self.attach("d", "vethd", Some("10.77.0.2/24"));
        let args = [
            "--no-daemon".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--port=0".to_owned(),
            "--user=root".to_owned(),
            "--interface=vethd".to_owned(),
            "--bind-interfaces".to_owned(),
            "--no-ping".to_owned(),
            "--log-dhcp".to_owned(),
            "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,1h".to_owned(),
            format!("--dhcp-leasefile={}", self.path("dnsmasq.leases").display()),
            format!("--pid-file={}", self.path("dnsmasq-d.pid").display()),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let g = self.spawn(&d, "dnsmasq-d.log", dnsmasq, &args);
        self.wait_log("dnsmasq-d.log", "DHCP, IP range");
        g
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for entry in std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") {
                    eprintln!("----- {name}\n{}", self.log(&name));
                }
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

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

fn helper() {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).unwrap();
    sock.set_broadcast(true).unwrap();
    let own = std::fs::read_to_string(format!("/sys/class/net/{CLIENT_IF}/address")).unwrap();
    let own = pxe::request::parse_mac(&own).unwrap();
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
    if std::env::var_os("PROVISIOND_PXE_HELPER").is_some() {
        helper();
    }
}

// ---------------------------------------------------------------- the VM's console

/// The serial log without ANSI escapes and carriage returns.
fn console(path: &Path) -> String {
    let raw = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn wait_console(path: &Path, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = console(path);
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < limit,
            "`{needle}` not on the VM console after {limit:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------- the test

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!(" {key}="))
        .map(|i| i + key.len() + 2)
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    let rest = &line[start..];
    &rest[..rest.find(' ').unwrap_or(rest.len())]
}

fn replies<'a>(lines: &'a [String], server: &str, xid: u32) -> Vec<&'a String> {
    let (from, xid) = (format!("REPLY from={server}:"), format!(" xid={xid:#x} "));
    lines
        .iter()
        .filter(|l| l.starts_with(&from) && l.contains(&xid))
        .collect()
}

/// The store: vDisks `lab` and `tools`; seat-1 (the VM) has both (a menu), seat-2 one.
fn store(dir: &Path) {
    let store = Arc::new(Store::open(dir).unwrap());
    create_vdisk(&store, "lab", 1 << 20, "lab image").unwrap();
    create_vdisk(&store, "tools", 1 << 20, "tools image").unwrap();
    let seat_1: Mac = SEAT_1.parse().unwrap();
    store
        .add_device(seat_1, "seat-1", None, DeviceType::Production)
        .unwrap();
    store.assign("seat-1", "lab", Mode::Standard, None).unwrap();
    store
        .assign("seat-1", "tools", Mode::Private, None)
        .unwrap();
    store
        .add_device(Mac(SEAT_2), "seat-2", None, DeviceType::Production)
        .unwrap();
    store.assign("seat-2", "lab", Mode::Standard, None).unwrap();
}

/// dnsmasq hands out the addresses; provisiond answers the PXE clients of its devices
/// (and nobody else) with iPXE or, for iPXE, the device's script, and serves that
/// script over TFTP: QEMU's iPXE ROM shows seat-1's menu of its two vDisks.
#[test]
fn qemu_pxe_rom_gets_its_device_menu_from_provisiond() {
    let Some(mut lab) = Lab::new("q") else { return };
    let Some(qemu) = testkit::peer("qemu-system-x86_64") else {
        return;
    };
    let Some(dnsmasq) = testkit::peer("dnsmasq") else {
        return;
    };
    let _plain = lab.plain_dhcp(&dnsmasq);
    let c = lab.attach("c", CLIENT_IF, None);
    let s = lab.name("s");
    ip(&["-n", &s, "tuntap", "add", "dev", "tap0", "mode", "tap"]);
    ip(&["-n", &s, "link", "set", "tap0", "master", "br0", "up"]);

    store(&lab.path("store"));
    let tftp_root = lab.path("tftp");
    std::fs::create_dir(&tftp_root).unwrap();
    std::fs::write(tftp_root.join("undionly.kpxe"), b"not really iPXE").unwrap();
    let config = lab.path("provisiond.toml");
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
[dhcp]
enabled = true
interface = "br0"
server_ip = "{SERVER}"
router_advertisements = true
[boot]
nbd_server = "{SERVER}:10809"
menu_timeout = 60
"#,
            store = lab.path("store").display(),
            tftp = tftp_root.display(),
        ),
    )
    .unwrap();
    let _server = lab.spawn(
        &s,
        "provisiond.log",
        Path::new(env!("CARGO_BIN_EXE_provisiond")),
        &["--config", config.to_str().unwrap()],
    );
    lab.wait_log("provisiond.log", "ProxyDHCP service listening");
    lab.wait_log("provisiond.log", "TFTP service listening");

    // The scripted client: an unknown device gets nothing from us (its address from
    // dnsmasq); seat-2's PXE ROM gets iPXE, its iPXE gets seat-2's script.
    let lines = lab.client(&c);
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
        lab.log("provisiond.log")
            .contains("refused by the boot policy: unknown or disabled device"),
        "{}",
        lab.log("provisiond.log")
    );

    // QEMU's own PXE ROM (iPXE in the e1000 option ROM) as seat-1.
    let sercon = lab.path("sercon.bin");
    std::fs::write(&sercon, [0xf8, 0x03]).unwrap();
    let serial = lab.path("serial.txt");
    let args = [
        "-machine".to_owned(),
        "pc,accel=tcg".to_owned(),
        "-m".to_owned(),
        "256".to_owned(),
        "-display".to_owned(),
        "none".to_owned(),
        "-serial".to_owned(),
        format!("file:{}", serial.display()),
        "-fw_cfg".to_owned(),
        format!("name=etc/sercon-port,file={}", sercon.display()),
        "-netdev".to_owned(),
        "tap,id=n0,ifname=tap0,script=no,downscript=no".to_owned(),
        "-device".to_owned(),
        format!("e1000,netdev=n0,mac={SEAT_1}"),
        "-boot".to_owned(),
        "n".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let vm = lab.spawn(&s, "qemu.log", &qemu, &args);

    let text = wait_console(&serial, "tools (private)", Duration::from_secs(150));
    let vm_pid = vm.id();
    drop(vm); // SIGKILL to QEMU's PID; loading the kernel is another test's business.
    eprintln!("VM (PID {vm_pid}) console:\n{text}");
    assert!(
        text.contains("provision: choose a vDisk for seat-1"),
        "the script's menu title:\n{text}"
    );
    assert!(text.contains("lab (standard)"), "{text}");
    assert!(
        text.lines().any(|l| l
            .strip_prefix("net0: 10.77.0.")
            .and_then(|rest| rest.split('/').next()?.parse::<u8>().ok())
            .is_some_and(|o| (50..=60).contains(&o))),
        "the address comes from dnsmasq (10.77.0.50-60):\n{text}"
    );
    let log = lab.log("provisiond.log");
    assert!(
        log.contains("file=provision/52:54:00:77:00:01.ipxe"),
        "provisiond offered seat-1's script:\n{log}"
    );
    assert!(
        log.contains("router solicitation answered"),
        "no router advertisement sent:\n{log}"
    );
}
