//! Every DHCP packet captured from real firmware (SeaBIOS + iPXE, OVMF) and dnsmasq
//! decodes, re-encodes byte-identical, and has the typed options SPECS.md §4 describes.

mod common;

use common::pcap::{Datagram, dhcp_datagrams};
use pxe::options::{ClientArch, MachineId, PxeVendor, VendorClass, VendorKind, codes};
use pxe::{Message, MessageType};

fn capture(name: &str) -> Option<Vec<Datagram>> {
    let dir = testkit::fixtures()?;
    let bytes = std::fs::read(dir.join("pcap").join(name)).expect("reading capture");
    Some(dhcp_datagrams(&bytes))
}

const CAPTURES: [&str; 3] = [
    "proxy-bios-dhcp-tftpctl.pcap",
    "proxy-uefi-dhcp-tftpctl.pcap",
    "full-dhcp-tftpctl.pcap",
];

#[test]
fn every_captured_packet_round_trips_byte_for_byte() {
    for name in CAPTURES {
        let Some(packets) = capture(name) else { return };
        assert!(
            packets.len() >= 4,
            "{name}: only {} DHCP packets",
            packets.len()
        );
        for d in &packets {
            let msg =
                Message::parse(&d.payload).unwrap_or_else(|e| panic!("{name} #{}: {e}", d.number));
            assert_eq!(
                msg.encode(),
                d.payload,
                "{name} #{} re-encodes differently",
                d.number
            );
            assert!(msg.message_type().is_some(), "{name} #{}", d.number);
            // Every typed option parses.
            if let Some(v) = msg.option(codes::CLIENT_ARCH) {
                ClientArch::parse_list(&v).unwrap();
            }
            if let Some(v) = msg.option(codes::CLIENT_UUID) {
                MachineId::parse(&v).unwrap();
            }
            if let Some(v) = msg.option(codes::VENDOR_SPECIFIC) {
                PxeVendor::parse(&v).unwrap_or_else(|e| panic!("{name} #{}: {e}", d.number));
            }
        }
    }
}

#[test]
fn bios_ipxe_discover_and_dnsmasq_proxy_offer() {
    let Some(packets) = capture("proxy-bios-dhcp-tftpctl.pcap") else {
        return;
    };
    let msgs: Vec<(Datagram, Message)> = packets
        .into_iter()
        .map(|d| {
            let m = Message::parse(&d.payload).unwrap();
            (d, m)
        })
        .collect();
    let (_, discover) = msgs
        .iter()
        .find(|(_, m)| m.message_type() == Some(MessageType::Discover))
        .expect("a DISCOVER");
    let vc = VendorClass::parse(&discover.option(codes::VENDOR_CLASS).unwrap());
    assert_eq!(vc.kind, VendorKind::PxeClient);
    assert_eq!(vc.arch, Some(0));
    let arch = ClientArch::parse_list(&discover.option(codes::CLIENT_ARCH).unwrap()).unwrap();
    assert_eq!(arch, vec![ClientArch::X86Bios]);
    assert_eq!(discover.option(codes::USER_CLASS).unwrap(), b"iPXE");
    assert!(discover.option(codes::IPXE_ENCAP).is_some());

    // dnsmasq's proxy offer: yiaddr 0, 60 = PXEClient, a menu in 43.
    let (d, offer) = msgs
        .iter()
        .find(|(d, m)| {
            m.message_type() == Some(MessageType::Offer)
                && d.src.port() == 67
                && m.yiaddr.is_unspecified()
        })
        .expect("a proxy OFFER");
    assert_eq!(d.dst.port(), 68);
    assert_eq!(offer.option(codes::VENDOR_CLASS).unwrap(), b"PXEClient");
    let v = PxeVendor::parse(&offer.option(codes::VENDOR_SPECIFIC).unwrap()).unwrap();
    assert_eq!(v.discovery_control(), Some(3));
    assert!(!v.menu().is_empty());
    assert!(v.prompt().is_some());

    // The PXEBS request on 4011 carries 43.71 and the ACK echoes it.
    let (_, req) = msgs
        .iter()
        .find(|(d, m)| d.dst.port() == 4011 && m.message_type() == Some(MessageType::Request))
        .expect("a 4011 REQUEST");
    let item = PxeVendor::parse(&req.option(codes::VENDOR_SPECIFIC).unwrap())
        .unwrap()
        .boot_item()
        .expect("boot item");
    let (_, ack) = msgs
        .iter()
        .find(|(d, m)| d.src.port() == 4011 && m.message_type() == Some(MessageType::Ack))
        .expect("a 4011 ACK");
    let echoed = PxeVendor::parse(&ack.option(codes::VENDOR_SPECIFIC).unwrap()).unwrap();
    assert_eq!(echoed.boot_item(), Some(item));
    assert!(ack.file_name().is_some());
}

#[test]
fn uefi_capture_has_pxe_and_http_clients() {
    let Some(packets) = capture("proxy-uefi-dhcp-tftpctl.pcap") else {
        return;
    };
    let mut kinds = Vec::new();
    for d in &packets {
        let m = Message::parse(&d.payload).unwrap();
        if m.message_type() == Some(MessageType::Discover)
            && let Some(v) = m.option(codes::VENDOR_CLASS)
        {
            let vc = VendorClass::parse(&v);
            kinds.push((vc.kind, vc.arch));
        }
    }
    assert!(
        kinds.contains(&(VendorKind::PxeClient, Some(7))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(VendorKind::HttpClient, Some(16))),
        "{kinds:?}"
    );
}
