//! `pxe-serve` against real peers in network namespaces this test creates (see the lab
//! module: root only; every namespace is deleted at the end, even on failure; only
//! 10.77.x.x addresses).
//!
//! Topology (one bridge per test, names carry the test's tag and PID):
//! ```text
//!  ns <tag>s: br0 10.77.0.1 ── pxe-serve
//!     ├─ veth ═ ns <tag>d: 10.77.0.2  dnsmasq, plain DHCP (no PXE)     [proxy tests]
//!     ├─ veth ═ ns <tag>r: 10.77.0.3  dnsmasq in proxy mode            [rival test]
//!     └─ veth ═ ns <tag>c: no address  scripted PXE client / udhcpc / dhclient
//! ```
//! The scripted client is this test binary re-run inside the client namespace
//! (`client_helper`, its script selected by `lab::HELPER_ENV`).

mod lab;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{CLIENT_IF, Lab, SERVER, field, firmware_dir, wait_console};
use pxe::client::ClientProfile;
use pxe::options::{PxeVendor, VendorKind, codes};
use pxe::wire::message::FLAG_BROADCAST;
use pxe::{Message, MessageType};
use testkit::ChildGuard;

/// Starts pxe-serve on br0 in the lab's server namespace with `args`.
fn pxe_serve(lab: &Lab, args: &[&str]) -> ChildGuard {
    let s = lab.name("s");
    let mut all = vec!["-i", "br0", "--server-ip", SERVER];
    all.extend_from_slice(args);
    let guard = lab.spawn(
        &s,
        "pxe-serve.log",
        Path::new(env!("CARGO_BIN_EXE_pxe-serve")),
        &all,
    );
    lab.wait_log("pxe-serve.log", "pxe server running");
    guard
}

// ---------------------------------------------------------------- the scripted client

fn summary(from: SocketAddrV4, m: &Message) -> String {
    let vendor = m
        .option(codes::VENDOR_SPECIFIC)
        .and_then(|v| PxeVendor::parse(&v).ok());
    format!(
        "REPLY from={from} type={:?} xid={:#x} yiaddr={} siaddr={} file={} vc={} uuid={} lease={} menu={} item={} ctl={}",
        m.message_type(),
        m.xid,
        m.yiaddr,
        m.siaddr,
        m.file_name()
            .or_else(|| m
                .option(codes::BOOTFILE_NAME)
                .map(|v| String::from_utf8_lossy(&v).into_owned()))
            .unwrap_or_default(),
        m.option(codes::VENDOR_CLASS)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default(),
        m.option(codes::CLIENT_UUID)
            .map(|v| v.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .unwrap_or_default(),
        m.option(codes::LEASE_TIME).is_some(),
        vendor
            .as_ref()
            .map(|v| v
                .menu()
                .iter()
                .map(|i| format!("{:#x}:{}", i.kind, String::from_utf8_lossy(&i.text)))
                .collect::<Vec<_>>()
                .join("|"))
            .unwrap_or_default(),
        vendor
            .as_ref()
            .and_then(|v| v.boot_item())
            .map(|b| format!("{:#x}", b.kind))
            .unwrap_or_default(),
        vendor
            .as_ref()
            .and_then(|v| v.discovery_control())
            .map(|c| c.to_string())
            .unwrap_or_default(),
    )
}

/// Collects replies with `xid` until `enough` says stop or `wait` passes.
fn collect(
    sock: &UdpSocket,
    xid: u32,
    wait: Duration,
    enough: impl Fn(&[(SocketAddrV4, Message)]) -> bool,
) -> Vec<(SocketAddrV4, Message)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    while start.elapsed() < wait && !enough(&got) {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let Ok((n, std::net::SocketAddr::V4(from))) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Ok(m) = Message::parse(&buf[..n])
            && m.xid == xid
            && m.op == pxe::Op::BootReply
        {
            println!("{}", summary(from, &m));
            got.push((from, m));
        }
    }
    got
}

fn client_mac() -> [u8; 6] {
    let text = std::fs::read_to_string(format!("/sys/class/net/{CLIENT_IF}/address")).unwrap();
    pxe::request::parse_mac(text.trim()).unwrap()
}

fn profile(kind: VendorKind) -> ClientProfile {
    let mut p = ClientProfile::bios(client_mac());
    p.kind = kind;
    p.uuid = [
        0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde,
        0xf0,
    ];
    p
}

fn broadcast(sock: &UdpSocket, m: &Message) {
    sock.send_to(&m.encode(), (Ipv4Addr::BROADCAST, 67))
        .unwrap();
}

fn is_proxy(m: &Message) -> bool {
    m.yiaddr.is_unspecified()
}

/// `proxies`: how many proxy offers to wait for besides the address offer.
fn helper_pxe(item: Option<u16>, proxies: usize) {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).unwrap();
    sock.set_broadcast(true).unwrap();
    let client = profile(VendorKind::PxeClient);
    let mut discover = client.discover(0x5eed_0001);
    discover.flags |= FLAG_BROADCAST;
    broadcast(&sock, &discover);
    let offers = collect(&sock, discover.xid, Duration::from_secs(10), |g| {
        g.iter().filter(|(_, m)| is_proxy(m)).count() >= proxies
            && g.iter().any(|(_, m)| !is_proxy(m))
    });
    // Take the address offer like firmware does, then ask the boot server on 4011.
    let (from, addr_offer) = offers
        .iter()
        .find(|(_, m)| !is_proxy(m))
        .expect("an address offer");
    let mut request = client.boot_request(0x5eed_0002, Ipv4Addr::UNSPECIFIED, None);
    request.flags |= FLAG_BROADCAST;
    request
        .options
        .push(codes::REQUESTED_IP, &addr_offer.yiaddr.octets());
    request.options.push(codes::SERVER_ID, &from.ip().octets());
    broadcast(&sock, &request);
    let acks = collect(&sock, request.xid, Duration::from_secs(10), |g| {
        g.iter()
            .any(|(_, m)| m.message_type() == Some(MessageType::Ack))
    });
    let leased = acks
        .iter()
        .find(|(_, m)| m.message_type() == Some(MessageType::Ack))
        .expect("an ACK")
        .1
        .yiaddr;
    println!("LEASE {leased}");
    testkit::run(Command::new("ip").args([
        "addr",
        "add",
        &format!("{leased}/24"),
        "dev",
        CLIENT_IF,
    ]));
    let boot = client.boot_request(0x5eed_0003, leased, item);
    sock.send_to(&boot.encode(), (SERVER.parse::<Ipv4Addr>().unwrap(), 4011))
        .unwrap();
    collect(&sock, boot.xid, Duration::from_secs(10), |g| !g.is_empty());
    // EDK2 sends the same request from port 4011: the answer must come back there.
    let edk2 = UdpSocket::bind((leased, 4011)).unwrap();
    let boot = client.boot_request(0x5eed_0004, leased, item);
    edk2.send_to(&boot.encode(), (SERVER.parse::<Ipv4Addr>().unwrap(), 4011))
        .unwrap();
    collect(&edk2, boot.xid, Duration::from_secs(10), |g| !g.is_empty());
}

/// An iPXE client (77 = "iPXE", 175 present) broadcasts a DISCOVER.
fn helper_ipxe() {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).unwrap();
    sock.set_broadcast(true).unwrap();
    let mut client = profile(VendorKind::PxeClient);
    client.ipxe = true;
    let mut discover = client.discover(0x5eed_0030);
    discover.flags |= FLAG_BROADCAST;
    broadcast(&sock, &discover);
    collect(&sock, discover.xid, Duration::from_secs(10), |g| {
        g.iter().any(|(_, m)| is_proxy(m))
    });
}

fn helper_plain() {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).unwrap();
    sock.set_broadcast(true).unwrap();
    let mut discover = profile(VendorKind::Other).discover(0x5eed_0010);
    discover.flags |= FLAG_BROADCAST;
    broadcast(&sock, &discover);
    // Give every server time to answer (dnsmasq answers within milliseconds).
    collect(&sock, discover.xid, Duration::from_secs(3), |_| false);
}

fn helper_malformed() {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).unwrap();
    sock.set_broadcast(true).unwrap();
    let good = profile(VendorKind::PxeClient).discover(0x5eed_0020);
    let bytes = good.encode();
    let mut bad_cookie = bytes.clone();
    bad_cookie[236] = 0;
    let mut overrun = bytes[..240].to_vec();
    overrun.extend_from_slice(&[53, 1, 1, 60, 250, 0]);
    let no_end: Vec<u8> = bytes[..240].iter().copied().chain([53, 1, 1]).collect();
    let mut overload_loop = good.clone();
    overload_loop.options.push(52, &[1]);
    overload_loop.file[..4].copy_from_slice(&[52, 1, 1, 255]);
    let mut many = bytes[..240].to_vec();
    many.extend(std::iter::repeat_n([201u8, 0], 600).flatten());
    many.push(255);
    let mut bad_arch = good.clone();
    bad_arch.options.set(codes::CLIENT_ARCH, &[0, 0, 7]);
    for b in [
        vec![],
        vec![1; 100],
        bytes[..200].to_vec(),
        bad_cookie,
        overrun,
        no_end,
        overload_loop.encode(),
        many,
        bad_arch.encode(),
    ] {
        sock.send_to(&b, (Ipv4Addr::BROADCAST, 67)).unwrap();
    }
    let mut good = good;
    good.flags |= FLAG_BROADCAST;
    broadcast(&sock, &good);
    collect(&sock, good.xid, Duration::from_secs(5), |g| !g.is_empty());
}

/// Not a test: the scripted client, run by the tests inside the client namespace.
#[test]
#[ignore = "run by the namespace tests inside their client namespace"]
fn client_helper() {
    match lab::helper().as_deref() {
        Some("pxe") => helper_pxe(None, 1),
        Some("pxe-two-proxies") => helper_pxe(None, 2),
        Some("pxe-menu-b") => helper_pxe(Some(0x8001), 1),
        Some("plain") => helper_plain(),
        Some("ipxe") => helper_ipxe(),
        Some("malformed") => helper_malformed(),
        _ => {}
    }
}

// ---------------------------------------------------------------- the tests

fn from_server<'a>(lines: &'a [String], server: &str) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|l| l.starts_with(&format!("REPLY from={server}:")))
        .collect()
}

#[test]
fn proxy_mode_beside_a_plain_dhcp_server() {
    let Some(mut lab) = Lab::new("pxp") else {
        return;
    };
    let Some(_dnsmasq) = lab.plain_dhcp() else {
        return;
    };
    let c = lab.attach("c", CLIENT_IF, None);
    let _server = pxe_serve(
        &lab,
        &[
            "--boot-file",
            "bios=undionly.kpxe",
            "--boot-file",
            "efi-x64=ipxe.efi",
            "--ipxe-script",
            "http://10.77.0.1/boot.ipxe",
        ],
    );

    let lines = lab.client(&c, "pxe");
    let ours = from_server(&lines, SERVER);
    assert!(
        ours.len() >= 2,
        "expected our proxy offer and 4011 ACK:\n{}",
        lines.join("\n")
    );
    let offer = ours
        .iter()
        .find(|l| l.contains("type=Some(Offer)"))
        .expect("our proxy OFFER");
    assert!(offer.starts_with("REPLY from=10.77.0.1:67 "), "{offer}");
    assert_eq!(field(offer, "yiaddr"), "0.0.0.0");
    assert_eq!(field(offer, "vc"), "PXEClient");
    assert_eq!(field(offer, "siaddr"), SERVER);
    assert_eq!(field(offer, "file"), "undionly.kpxe");
    assert_eq!(
        field(offer, "uuid"),
        "0078563412bc9af0de123456789abcdef0",
        "option 97 echoed"
    );
    assert_eq!(field(offer, "lease"), "false");
    // The address came from dnsmasq.
    let theirs = from_server(&lines, "10.77.0.2");
    assert!(
        theirs.iter().any(|l| l.contains("type=Some(Offer)")
            && field(l, "yiaddr")
                .parse::<Ipv4Addr>()
                .is_ok_and(|a| (50..=60).contains(&a.octets()[3]))),
        "{lines:?}"
    );
    let lease = lines
        .iter()
        .find_map(|l| l.strip_prefix("LEASE "))
        .expect("a lease");
    // The 4011 exchange: an ACK from port 4011 with the boot file, to the leased address.
    let ack = ours
        .iter()
        .find(|l| l.contains("type=Some(Ack)"))
        .expect("our 4011 ACK");
    assert!(ack.starts_with("REPLY from=10.77.0.1:4011 "), "{ack}");
    assert_eq!(field(ack, "file"), "undionly.kpxe");
    assert_eq!(field(ack, "siaddr"), SERVER);
    assert!(!lease.is_empty());
    let acks: Vec<_> = ours
        .iter()
        .filter(|l| l.contains("type=Some(Ack)"))
        .collect();
    assert_eq!(
        acks.len(),
        2,
        "one ACK to port 68, one to port 4011 (EDK2): {acks:?}"
    );

    // iPXE gets the script, not undionly.kpxe again.
    let lines = lab.client(&c, "ipxe");
    let offer = from_server(&lines, SERVER)
        .into_iter()
        .find(|l| l.contains("type=Some(Offer)"))
        .expect("our offer to iPXE");
    assert_eq!(field(offer, "file"), "http://10.77.0.1/boot.ipxe");

    // A client without option 60 gets nothing from us, but its address from dnsmasq.
    let lines = lab.client(&c, "plain");
    assert!(
        from_server(&lines, SERVER).is_empty(),
        "proxy answered a non-PXE client: {lines:?}"
    );
    assert!(
        !from_server(&lines, "10.77.0.2").is_empty(),
        "dnsmasq did not answer: {lines:?}"
    );
    assert!(
        lab.log("pxe-serve.log")
            .contains("not a PXE or HTTP boot client")
    );
}

#[test]
fn proxy_menu_and_boot_server_selection() {
    let Some(mut lab) = Lab::new("pxm") else {
        return;
    };
    let Some(_dnsmasq) = lab.plain_dhcp() else {
        return;
    };
    let c = lab.attach("c", CLIENT_IF, None);
    let _server = pxe_serve(
        &lab,
        &[
            "--menu-prompt",
            "Provision menu",
            "--menu-timeout",
            "10",
            "--menu-entry",
            "Boot A=entry-a.ipxe",
            "--menu-entry",
            "Boot B=entry-b.ipxe",
        ],
    );
    let lines = lab.client(&c, "pxe-menu-b");
    let ours = from_server(&lines, SERVER);
    let offer = ours
        .iter()
        .find(|l| l.contains("type=Some(Offer)"))
        .expect("our proxy OFFER");
    assert_eq!(field(offer, "menu"), "0x8000:Boot A|0x8001:Boot B");
    assert_eq!(field(offer, "ctl"), "3");
    let ack = ours
        .iter()
        .find(|l| l.contains("type=Some(Ack)"))
        .expect("the boot server ACK");
    assert_eq!(field(ack, "item"), "0x8001");
    assert_eq!(field(ack, "file"), "entry-b.ipxe");
}

#[test]
fn malformed_packets_are_logged_and_the_server_keeps_answering() {
    let Some(mut lab) = Lab::new("pxx") else {
        return;
    };
    let c = lab.attach("c", CLIENT_IF, None);
    let _server = pxe_serve(&lab, &["--boot-file", "bios=undionly.kpxe"]);
    let lines = lab.client(&c, "malformed");
    assert!(
        from_server(&lines, SERVER)
            .iter()
            .any(|l| l.contains("type=Some(Offer)")),
        "{lines:?}"
    );
    let log = lab.log("pxe-serve.log");
    let dropped = log.matches("dropping malformed DHCP").count();
    assert!(
        dropped >= 8,
        "expected a log line per malformed packet, got {dropped}:\n{log}"
    );
}

#[test]
fn rival_proxy_dhcp_server_is_named_in_the_log() {
    let Some(mut lab) = Lab::new("pxr") else {
        return;
    };
    let Some(dnsmasq) = testkit::peer("dnsmasq") else {
        return;
    };
    let Some(_plain) = lab.plain_dhcp() else {
        return;
    };
    let r = lab.attach("r", "vethr", Some("10.77.0.3/24"));
    let args = [
        "--no-daemon",
        "--conf-file=/dev/null",
        "--port=0",
        "--user=root",
        "--interface=vethr",
        "--bind-interfaces",
        "--log-dhcp",
        "--dhcp-range=10.77.0.0,proxy,255.255.255.0",
        "--pxe-service=x86PC,\"Rival boot\",rival",
    ];
    let pid = format!("--pid-file={}", lab.path("dnsmasq-r.pid").display());
    let mut all = args.to_vec();
    all.push(&pid);
    let _rival = lab.spawn(&r, "dnsmasq-r.log", &dnsmasq, &all);
    lab.wait_log("dnsmasq-r.log", "proxy on subnet");
    let c = lab.attach("c", CLIENT_IF, None);
    let _server = pxe_serve(&lab, &["--boot-file", "bios=undionly.kpxe"]);
    let lines = lab.client(&c, "pxe-two-proxies");
    assert!(
        !from_server(&lines, "10.77.0.3").is_empty(),
        "dnsmasq proxy did not answer: {lines:?}"
    );
    lab.wait_log("pxe-serve.log", "ProxyDHCP server 10.77.0.3");
}

#[test]
fn full_mode_leases_to_udhcpc_and_dhclient() {
    let Some(mut lab) = Lab::new("pxf") else {
        return;
    };
    let Some(busybox) = testkit::peer("busybox") else {
        return;
    };
    let c = lab.attach("c", CLIENT_IF, None);
    let leases = lab.path("pxe.leases");
    let _server = pxe_serve(
        &lab,
        &[
            "--mode",
            "full",
            "--pool",
            "10.77.0.100-10.77.0.110/24",
            "--router",
            SERVER,
            "--leases",
            leases.to_str().unwrap(),
            "--boot-file",
            "bios=undionly.kpxe",
        ],
    );
    let script = lab.path("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"UDHCPC $1 ip=$ip mask=$mask router=$router\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = testkit::run(
        Command::new("ip")
            .args(["netns", "exec", &c])
            .arg(&busybox)
            .args([
                "udhcpc",
                "-i",
                CLIENT_IF,
                "-f",
                "-q",
                "-n",
                "-t",
                "5",
                "-T",
                "2",
                "-s",
                script.to_str().unwrap(),
            ]),
    );
    assert!(
        out.contains("UDHCPC bound ip=10.77.0.100 mask=24 router=10.77.0.1"),
        "{out}"
    );
    let table = std::fs::read_to_string(&leases).expect("lease file written");
    assert!(
        table.contains("10.77.0.100") && table.contains("bound"),
        "{table}"
    );

    // dhclient stays in the foreground after binding: wait for its lease file.
    if let Some(dhclient) = testkit::peer("dhclient") {
        let lf = lab.path("dhclient.leases");
        let (lf_s, pf) = (
            lf.display().to_string(),
            lab.path("dhclient.pid").display().to_string(),
        );
        let _dhclient = lab.spawn(
            &c,
            "dhclient.log",
            &dhclient,
            &[
                "-d",
                "-1",
                "-v",
                "-sf",
                "/bin/true",
                "-lf",
                &lf_s,
                "-pf",
                &pf,
                CLIENT_IF,
            ],
        );
        lab.wait_log("dhclient.log", "DHCPACK of 10.77.0.100 from 10.77.0.1");
        let lease = std::fs::read_to_string(&lf).unwrap_or_default();
        assert!(lease.contains("fixed-address 10.77.0.100;"), "{lease}");
    }
}

/// dnsmasq as a TFTP server only, serving `root` on br0 in the server namespace.
fn dnsmasq_tftp(lab: &Lab, dnsmasq: &Path, root: &Path) -> ChildGuard {
    let tftp_root = format!("--tftp-root={}", root.display());
    let tftp_pid = format!("--pid-file={}", lab.path("dnsmasq-tftp.pid").display());
    let guard = lab.spawn(
        &lab.name("s"),
        "dnsmasq-tftp.log",
        dnsmasq,
        &[
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--user=root",
            "--interface=br0",
            "--bind-interfaces",
            "--enable-tftp",
            &tftp_root,
            &tftp_pid,
        ],
    );
    lab.wait_log("dnsmasq-tftp.log", "TFTP root is");
    guard
}

/// QEMU's own PXE ROM (iPXE in the e1000 option ROM, SeaBIOS, TCG) gets its address
/// from dnsmasq, our PXE menu from pxe-serve, selects entry B (the boot server exchange
/// on 4011) and fetches that file over TFTP (dnsmasq's TFTP server); pxe-serve also
/// answers the VM's IPv6 router solicitations so iPXE does not wait for IPv6.
#[test]
fn qemu_pxe_rom_boots_from_our_menu() {
    let Some(mut lab) = Lab::new("pxq") else {
        return;
    };
    let Some(qemu) = testkit::peer("qemu-system-x86_64") else {
        return;
    };
    let Some(dnsmasq) = testkit::peer("dnsmasq") else {
        return;
    };
    let Some(_plain) = lab.plain_dhcp() else {
        return;
    };
    let s = lab.name("s");
    lab.tap();

    let root = lab.path("tftp");
    std::fs::create_dir(&root).unwrap();
    for entry in ["a", "b"] {
        let script = format!("#!ipxe\necho PXE-QEMU-ENTRY-{}-OK\n", entry.to_uppercase());
        std::fs::write(root.join(format!("entry-{entry}.ipxe")), script).unwrap();
    }
    let _tftp = dnsmasq_tftp(&lab, &dnsmasq, &root);
    let _server = pxe_serve(
        &lab,
        &[
            "--menu-prompt",
            "PROVISION PXE MENU",
            "--menu-timeout",
            "255",
            "--menu-entry",
            "Boot A: entry-a=entry-a.ipxe",
            "--menu-entry",
            "Boot B: entry-b=entry-b.ipxe",
            "--router-advertisements",
        ],
    );

    let serial = lab.serial();
    let monitor = lab.path("monitor.sock");
    let mut args = lab.bios_vm_args("52:54:00:77:00:01", 256);
    args.extend([
        "-monitor".to_owned(),
        format!("unix:{},server,nowait", monitor.display()),
        "-uuid".to_owned(),
        "12345678-9abc-def0-1234-56789abcdef0".to_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _vm = lab.spawn(&s, "qemu.log", &qemu, &args);

    wait_console(&serial, "Boot B: entry-b", Duration::from_secs(120));
    // iPXE draws the menu's lines in its own order (the selected one may come last).
    let text = wait_console(&serial, "Boot A: entry-a", Duration::from_secs(30));
    assert!(text.contains("PROVISION PXE MENU"), "{text}");
    // Choose entry B as a user would.
    let mut mon = std::os::unix::net::UnixStream::connect(&monitor).expect("QEMU monitor");
    std::io::Write::write_all(&mut mon, b"sendkey b\n").unwrap();
    let text = wait_console(&serial, "PXE-QEMU-ENTRY-B-OK", Duration::from_secs(90));
    assert!(text.contains("entry-b.ipxe"), "{text}");
    assert!(
        lab::address_from_plain_dhcp(&text),
        "the address comes from dnsmasq (10.77.0.50-60):\n{text}"
    );

    let log = lab.log("pxe-serve.log");
    assert!(
        log.contains("kind=Some(Offer)") || log.contains("Offer"),
        "{log}"
    );
    assert!(
        log.contains("entry-b.ipxe"),
        "the 4011 ACK carried entry B:\n{log}"
    );
    let tftp = lab.log("dnsmasq-tftp.log");
    assert!(
        tftp.contains("entry-b.ipxe"),
        "dnsmasq TFTP served entry B:\n{tftp}"
    );
    assert!(
        log.contains("router solicitation answered"),
        "no RA sent:\n{log}"
    );
    eprintln!("VM console:\n{text}");
}

/// OVMF (EDK2's own PXE stack on virtio-net, no option ROM) gets its address from
/// dnsmasq and `snponly.efi` from our proxy offer; that iPXE then identifies itself
/// (user class `iPXE`) and gets the iPXE script instead of itself again.
#[test]
fn qemu_uefi_pxe_then_ipxe_script() {
    let Some(mut lab) = Lab::new("pxu") else {
        return;
    };
    let Some(qemu) = testkit::peer("qemu-system-x86_64") else {
        return;
    };
    let Some(dnsmasq) = testkit::peer("dnsmasq") else {
        return;
    };
    let Some(ovmf) = firmware_dir("OVMF_DIR", "/usr/share/OVMF", "OVMF_CODE_4M.fd", "ovmf") else {
        return;
    };
    let Some(ipxe) = firmware_dir("IPXE_DIR", "/usr/lib/ipxe", "snponly.efi", "ipxe") else {
        return;
    };
    let Some(_plain) = lab.plain_dhcp() else {
        return;
    };
    let s = lab.name("s");
    lab.tap();

    let root = lab.path("tftp");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(ipxe.join("snponly.efi"), root.join("snponly.efi")).unwrap();
    std::fs::write(
        root.join("boot.ipxe"),
        "#!ipxe\necho PXE-QEMU-UEFI-SCRIPT-OK\n",
    )
    .unwrap();
    let _tftp = dnsmasq_tftp(&lab, &dnsmasq, &root);
    let _server = pxe_serve(
        &lab,
        &[
            "--boot-file",
            "efi-x64=snponly.efi",
            "--ipxe-script",
            "boot.ipxe",
            "--router-advertisements",
        ],
    );

    let serial = lab.serial();
    let args = lab.uefi_vm_args(&ovmf, "52:54:00:77:00:02", 512);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _vm = lab.spawn(&s, "qemu.log", &qemu, &args);

    let text = wait_console(&serial, "PXE-QEMU-UEFI-SCRIPT-OK", Duration::from_secs(240));
    let log = lab.log("pxe-serve.log");
    assert!(
        log.contains("snponly.efi"),
        "firmware got the boot file from us:\n{log}"
    );
    assert!(
        log.contains("boot.ipxe"),
        "iPXE got the script, not itself again:\n{log}"
    );
    let tftp = lab.log("dnsmasq-tftp.log");
    assert!(
        tftp.contains("snponly.efi") && tftp.contains("boot.ipxe"),
        "{tftp}"
    );
    eprintln!("pxe-serve log:\n{log}\nVM console:\n{text}");
}
