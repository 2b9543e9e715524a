//! ProxyDHCP decisions on captured and scripted requests (SPECS.md §4.5, E2E.md §6).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use pxe::client::ClientProfile;
use pxe::options::{ClientArch, PxeVendor, VendorKind, codes};
use pxe::proxy::{Ignored, boot_ack, offer};
use pxe::{Destination, Menu, MenuEntry, Message, MessageType, Policy, Silence};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x57];

fn policy() -> Policy {
    Policy::new(SERVER)
        .with_boot_file(ClientArch::X86Bios, "undionly.kpxe")
        .with_boot_file(ClientArch::EfiX64, "ipxe.efi")
        .with_boot_file(ClientArch::EfiX64Http, "http://10.77.0.1/ipxe.efi")
}

fn menu_policy() -> Policy {
    let mut p = policy();
    p.menu = Some(Menu {
        prompt: "Provision menu".into(),
        timeout: 255,
        entries: vec![
            MenuEntry {
                text: "Boot A".into(),
                boot_file: Some("entry-a.ipxe".into()),
                arches: vec![],
            },
            MenuEntry {
                text: "Boot B".into(),
                boot_file: Some("entry-b.ipxe".into()),
                arches: vec![],
            },
        ],
    });
    p
}

fn assert_proxy_shape(request: &Message, reply: &Message) {
    assert_eq!(reply.xid, request.xid);
    assert_eq!(reply.chaddr, request.chaddr);
    assert!(
        reply.yiaddr.is_unspecified(),
        "a proxy reply never hands out an address"
    );
    assert_eq!(reply.option(codes::SERVER_ID).unwrap(), SERVER.octets());
    for forbidden in [
        codes::LEASE_TIME,
        codes::SUBNET_MASK,
        codes::ROUTER,
        codes::DNS,
    ] {
        assert!(
            reply.option(forbidden).is_none(),
            "option {forbidden} in a proxy reply"
        );
    }
    assert_eq!(
        reply.option(codes::CLIENT_UUID),
        request.option(codes::CLIENT_UUID)
    );
    assert!(reply.encode().len() >= 300);
}

#[test]
fn offer_for_the_captured_bios_discover() {
    let Some(dir) = testkit::fixtures() else {
        return;
    };
    let bytes = std::fs::read(dir.join("pcap/proxy-bios-dhcp-tftpctl.pcap")).unwrap();
    let discover = common::pcap::dhcp_datagrams(&bytes)
        .into_iter()
        .map(|d| Message::parse(&d.payload).unwrap())
        .find(|m| m.message_type() == Some(MessageType::Discover))
        .unwrap();
    // That client is iPXE (77 = "iPXE"): with a script configured it gets the script.
    let mut p = policy();
    p.ipxe_script = Some("boot.ipxe".into());
    let r = offer(&discover, &p).unwrap();
    assert_proxy_shape(&discover, &r.message);
    assert_eq!(r.to, Destination::Broadcast(68));
    assert!(r.message.broadcast());
    assert_eq!(r.message.option(codes::VENDOR_CLASS).unwrap(), b"PXEClient");
    assert_eq!(r.message.file_name().as_deref(), Some("boot.ipxe"));
    assert_eq!(r.message.siaddr, SERVER);
    // Without a script, handing it undionly.kpxe again would loop: silence.
    assert!(matches!(
        offer(&discover, &policy()),
        Err(Ignored::Silent(Silence::ChainloadLoop))
    ));
    // Another boot loader is fine, and the round trip holds.
    let pxelinux = Policy::new(SERVER).with_boot_file(ClientArch::X86Bios, "pxelinux.0");
    let r = offer(&discover, &pxelinux).unwrap();
    assert_eq!(r.message.file_name().as_deref(), Some("pxelinux.0"));
    assert_eq!(Message::parse(&r.message.encode()).unwrap(), r.message);
}

#[test]
fn menu_offer_then_boot_server_ack_on_4011() {
    let client = ClientProfile::bios(MAC);
    let discover = client.discover(0x1234);
    let r = offer(&discover, &menu_policy()).unwrap();
    assert_proxy_shape(&discover, &r.message);
    assert!(r.message.file_name().is_none());
    let v = PxeVendor::parse(&r.message.option(codes::VENDOR_SPECIFIC).unwrap()).unwrap();
    assert_eq!(v.discovery_control(), Some(3));
    assert_eq!(v.menu().len(), 2);
    assert_eq!(v.menu()[1].kind, 0x8001);
    assert_eq!(v.boot_servers()[0].addresses, vec![SERVER]);
    assert_eq!(v.prompt().unwrap().timeout, 255);

    let leased = Ipv4Addr::new(10, 77, 0, 139);
    let req = client.boot_request(0x99, leased, Some(0x8001));
    let src = SocketAddrV4::new(leased, 68);
    let ack = boot_ack(&req, src, &menu_policy()).unwrap();
    assert_eq!(ack.to, Destination::Unicast(src));
    let m = &ack.message;
    assert_eq!(m.message_type(), Some(MessageType::Ack));
    assert_eq!((m.ciaddr, m.yiaddr, m.siaddr), (leased, leased, SERVER));
    assert_eq!(m.file_name().as_deref(), Some("entry-b.ipxe"));
    let echoed = PxeVendor::parse(&m.option(codes::VENDOR_SPECIFIC).unwrap()).unwrap();
    assert_eq!(echoed.boot_item().unwrap().kind, 0x8001);

    // EDK2 asks from port 4011: answer to that port.
    let src = SocketAddrV4::new(leased, 4011);
    assert_eq!(
        boot_ack(&req, src, &menu_policy()).unwrap().to,
        Destination::Unicast(src)
    );
    // An item that does not exist gets nothing.
    let bad = client.boot_request(0x99, leased, Some(0x8005));
    assert!(matches!(
        boot_ack(&bad, src, &menu_policy()),
        Err(Ignored::Silent(Silence::UnknownItem(0x8005)))
    ));
}

#[test]
fn plain_proxy_request_on_4011_gets_the_arch_file() {
    let mut client = ClientProfile::bios(MAC);
    client.arch = ClientArch::EfiX64;
    let leased = Ipv4Addr::new(10, 77, 0, 140);
    let req = client.boot_request(7, leased, None);
    let ack = boot_ack(&req, SocketAddrV4::new(leased, 4011), &policy()).unwrap();
    assert_eq!(ack.message.file_name().as_deref(), Some("ipxe.efi"));
    assert!(ack.message.yiaddr.is_unspecified());
    assert_eq!(ack.message.ciaddr, leased);
    // Even with a menu, a request without 43.71 gets the first item's file.
    let ack = boot_ack(&req, SocketAddrV4::new(leased, 4011), &menu_policy()).unwrap();
    assert_eq!(ack.message.file_name().as_deref(), Some("entry-a.ipxe"));
}

#[test]
fn http_boot_client_gets_a_uri() {
    let mut client = ClientProfile::bios(MAC);
    client.arch = ClientArch::EfiX64Http;
    client.kind = VendorKind::HttpClient;
    let d = client.discover(5);
    let r = offer(&d, &policy()).unwrap();
    assert_proxy_shape(&d, &r.message);
    assert_eq!(
        r.message.option(codes::VENDOR_CLASS).unwrap(),
        b"HTTPClient"
    );
    assert_eq!(
        r.message.option(codes::BOOTFILE_NAME).unwrap(),
        b"http://10.77.0.1/ipxe.efi"
    );
    assert!(r.message.option(codes::VENDOR_SPECIFIC).is_none());
}

#[test]
fn silence_for_non_pxe_clients_requests_on_67_and_other_servers() {
    let mut plain = ClientProfile::bios(MAC);
    plain.kind = VendorKind::Other;
    assert!(matches!(
        offer(&plain.discover(1), &policy()),
        Err(Ignored::Silent(Silence::NotBootClient))
    ));
    let pxe = ClientProfile::bios(MAC);
    // A REQUEST on 67 is the site server's business.
    let req = pxe.boot_request(2, Ipv4Addr::UNSPECIFIED, None);
    assert!(matches!(
        offer(&req, &policy()),
        Err(Ignored::Silent(Silence::NotForUs))
    ));
    // A 4011 REQUEST naming another server id.
    let mut req = pxe.boot_request(3, Ipv4Addr::new(10, 77, 0, 9), None);
    req.options.push(codes::SERVER_ID, &[10, 77, 0, 2]);
    let src = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 9), 68);
    assert!(matches!(
        boot_ack(&req, src, &policy()),
        Err(Ignored::Silent(Silence::OtherServer(_)))
    ));
    // Garbage.
    assert!(matches!(
        offer(&Message::default(), &policy()),
        Err(Ignored::Malformed(_))
    ));
}

#[test]
fn relayed_discover_is_answered_to_the_relay() {
    let mut d = ClientProfile::bios(MAC).discover(9);
    d.giaddr = Ipv4Addr::new(10, 77, 5, 1);
    let r = offer(&d, &policy()).unwrap();
    assert_eq!(r.to, Destination::Unicast(SocketAddrV4::new(d.giaddr, 67)));
    assert_eq!(r.message.giaddr, d.giaddr);
}
