//! What UEFI HTTP Boot firmware makes of our offers. EDK2's HTTP boot driver
//! (`NetworkPkg/HttpBootDxe/HttpBootDhcp4.c`) sorts every DHCP offer it receives into
//! a type, then picks by a fixed priority. The rules, as facts from that file:
//!
//! - an offer with `yiaddr` 0 is a proxy offer;
//! - an offer whose option 60 starts with `HTTPClient` is an HTTP offer, and must carry
//!   a boot URI (option 67, else the `file` field) or it is dropped; a proxy offer that
//!   is no HTTP offer is dropped;
//! - the URI is "IP-expressed" when its host is an IPv4 literal; an offer with option 6
//!   is a DNS offer;
//! - with no URI configured in the firmware, it takes the first of: a DHCP offer with
//!   an IP URI (without, then with DNS); with a name URI and DNS; a DHCP-only offer
//!   plus a proxy offer with an IP URI; a DHCP offer with DNS plus a proxy with an IP
//!   URI; with DNS plus a proxy with a name URI; with DNS plus a DHCP offer with a
//!   name URI. Nothing else boots.
//!
//! The tests below classify our real offers with those rules beside the site's
//! offers, for each case that involves a proxy.

use std::net::Ipv4Addr;

use pxe::client::ClientProfile;
use pxe::full::{FullConfig, FullDhcp, Leases, Pool};
use pxe::options::{ClientArch, VendorKind, codes};
use pxe::proxy::offer;
use pxe::{Message, MessageType, Op, Policy};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const SITE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x58];

/// The offer types of EDK2's HTTP boot driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DhcpOnly,
    DhcpDns,
    DhcpIpUri,
    DhcpIpUriDns,
    DhcpNameUri,
    DhcpNameUriDns,
    ProxyIpUri,
    ProxyNameUri,
}

/// The type of `m`, or `None` when the firmware drops it.
fn kind(m: &Message) -> Option<Kind> {
    let proxy = m.yiaddr.is_unspecified();
    let http = m
        .option(codes::VENDOR_CLASS)
        .is_some_and(|v| v.starts_with(b"HTTPClien"));
    let dns = m.option(codes::DNS).is_some();
    if !http {
        return match (proxy, dns) {
            (true, _) => None,
            (false, true) => Some(Kind::DhcpDns),
            (false, false) => Some(Kind::DhcpOnly),
        };
    }
    let uri = m
        .option(codes::BOOTFILE_NAME)
        .map(|v| {
            String::from_utf8_lossy(&v)
                .trim_end_matches('\0')
                .to_owned()
        })
        .or_else(|| m.file_name())?;
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))?;
    let host = rest.split(['/', ':']).next().unwrap_or("");
    let ip = host.parse::<Ipv4Addr>().is_ok();
    Some(match (proxy, ip, dns) {
        (true, true, _) => Kind::ProxyIpUri,
        (true, false, _) => Kind::ProxyNameUri,
        (false, true, false) => Kind::DhcpIpUri,
        (false, true, true) => Kind::DhcpIpUriDns,
        (false, false, false) => Kind::DhcpNameUri,
        (false, false, true) => Kind::DhcpNameUriDns,
    })
}

/// What the firmware boots from `offers` (no URI configured in it): the offer that
/// gives the address, and the one that gives the URI (the same one, or a proxy's).
fn select(offers: &[Message]) -> Option<(Kind, Kind)> {
    let kinds: Vec<Kind> = offers.iter().filter_map(kind).collect();
    let has = |k: Kind| kinds.contains(&k);
    use Kind::*;
    [
        (DhcpIpUri, DhcpIpUri),
        (DhcpIpUriDns, DhcpIpUriDns),
        (DhcpNameUriDns, DhcpNameUriDns),
        (DhcpOnly, ProxyIpUri),
        (DhcpDns, ProxyIpUri),
        (DhcpDns, ProxyNameUri),
        (DhcpDns, DhcpNameUri),
    ]
    .into_iter()
    .find(|&(address, uri)| has(address) && has(uri))
}

fn firmware() -> ClientProfile {
    let mut c = ClientProfile::bios(MAC);
    c.arch = ClientArch::EfiX64Http;
    c.kind = VendorKind::HttpClient;
    c
}

fn policy(uri: &str) -> Policy {
    Policy::new(SERVER).with_boot_file(ClientArch::EfiX64Http, uri)
}

/// The site's DHCP server's offer: an address, DNS if `dns`, and no boot URI.
fn site_offer(request: &Message, dns: bool) -> Message {
    let mut m = request.clone();
    m.op = Op::BootReply;
    m.yiaddr = Ipv4Addr::new(10, 77, 0, 60);
    m.options = Default::default();
    m.options
        .push(codes::MESSAGE_TYPE, &[u8::from(MessageType::Offer)]);
    m.options.push(codes::SERVER_ID, &SITE.octets());
    if dns {
        m.options.push(codes::DNS, &SITE.octets());
    }
    m
}

fn our_offer(request: &Message, uri: &str) -> Message {
    offer(request, &policy(uri)).unwrap().message
}

#[test]
fn beside_a_dhcp_only_site_server_our_ip_uri_is_what_boots() {
    let discover = firmware().discover(1);
    let ours = our_offer(&discover, "http://10.77.0.1:8080/ipxe.efi");
    assert_eq!(kind(&ours), Some(Kind::ProxyIpUri));
    let site = site_offer(&discover, false);
    assert_eq!(
        select(&[site, ours]),
        Some((Kind::DhcpOnly, Kind::ProxyIpUri))
    );
}

#[test]
fn beside_a_site_server_with_dns_our_ip_uri_is_what_boots() {
    let discover = firmware().discover(2);
    let ours = our_offer(&discover, "http://10.77.0.1:8080/ipxe.efi");
    let site = site_offer(&discover, true);
    assert_eq!(
        select(&[ours, site]),
        Some((Kind::DhcpDns, Kind::ProxyIpUri))
    );
}

/// Why provisiond writes an IP literal: a host name in a proxy's URI only boots when
/// the site's offer carries DNS.
#[test]
fn a_host_name_uri_needs_the_site_servers_dns() {
    let discover = firmware().discover(3);
    let ours = our_offer(&discover, "http://boot.example/ipxe.efi");
    assert_eq!(kind(&ours), Some(Kind::ProxyNameUri));
    assert_eq!(select(&[site_offer(&discover, false), ours.clone()]), None);
    assert_eq!(
        select(&[site_offer(&discover, true), ours]),
        Some((Kind::DhcpDns, Kind::ProxyNameUri))
    );
}

/// A site server that gives an HTTP URI itself wins over any proxy: the firmware
/// then never asks us.
#[test]
fn a_site_server_with_its_own_uri_takes_precedence() {
    let discover = firmware().discover(4);
    let mut site = site_offer(&discover, false);
    site.options.push(codes::VENDOR_CLASS, b"HTTPClient");
    site.options
        .push(codes::BOOTFILE_NAME, b"http://10.77.0.2/other.efi");
    let ours = our_offer(&discover, "http://10.77.0.1:8080/ipxe.efi");
    assert_eq!(
        select(&[ours, site]),
        Some((Kind::DhcpIpUri, Kind::DhcpIpUri))
    );
}

/// Our offer is an HTTP offer only for an HTTP client: a PXE client's proxy offer says
/// `PXEClient`, which the HTTP boot driver drops.
#[test]
fn a_pxe_clients_offer_is_no_http_offer() {
    let mut pxe_client = firmware();
    pxe_client.kind = VendorKind::PxeClient;
    pxe_client.arch = ClientArch::EfiX64;
    let policy =
        policy("http://10.77.0.1:8080/ipxe.efi").with_boot_file(ClientArch::EfiX64, "ipxe.efi");
    let ours = offer(&pxe_client.discover(5), &policy).unwrap().message;
    assert_eq!(kind(&ours), None);
}

/// In full-DHCP mode our one offer gives the address and an IP URI: the first priority.
#[test]
fn in_full_mode_our_offer_boots_alone() {
    let pool = Pool::new(
        Ipv4Addr::new(10, 77, 0, 50),
        Ipv4Addr::new(10, 77, 0, 52),
        24,
    )
    .unwrap();
    let mut server = FullDhcp::new(
        policy("http://10.77.0.1:8080/ipxe.efi"),
        FullConfig::new(pool),
        Leases::new(),
    );
    let ours = server.handle(0, &firmware().discover(6)).unwrap().message;
    assert_eq!(kind(&ours), Some(Kind::DhcpIpUri));
    assert_eq!(select(&[ours]), Some((Kind::DhcpIpUri, Kind::DhcpIpUri)));
}
