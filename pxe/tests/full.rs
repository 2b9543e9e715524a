//! Full DHCP mode in virtual time: DORA, reservations, relays, RELEASE, DECLINE,
//! INFORM, NAKs, and leases that survive a restart.

use std::net::{Ipv4Addr, SocketAddrV4};

use pxe::client::ClientProfile;
use pxe::full::{FullConfig, FullDhcp, LeaseState, Leases, Pool};
use pxe::options::ClientArch;
use pxe::options::{VendorKind, codes};
use pxe::proxy::Ignored;
use pxe::{Destination, Message, MessageType, Policy, Silence};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

fn server(leases: Leases) -> FullDhcp {
    let mut pool = Pool::new(
        Ipv4Addr::new(10, 77, 0, 50),
        Ipv4Addr::new(10, 77, 0, 52),
        24,
    )
    .unwrap();
    pool.router = Some(SERVER);
    pool.dns = vec![SERVER];
    pool.lease_secs = 600;
    let mut relayed = Pool::new(
        Ipv4Addr::new(10, 77, 9, 100),
        Ipv4Addr::new(10, 77, 9, 110),
        24,
    )
    .unwrap();
    relayed.lease_secs = 300;
    let mut config = FullConfig::new(pool);
    config.pools.push(relayed);
    config
        .reservations
        .insert([2, 0, 0, 0, 0, 0x99], Ipv4Addr::new(10, 77, 0, 99));
    let policy = Policy::new(SERVER).with_boot_file(ClientArch::X86Bios, "undionly.kpxe");
    FullDhcp::new(policy, config, leases)
}

fn plain(mac_last: u8) -> ClientProfile {
    let mut c = ClientProfile::bios([2, 0, 0, 0, 0, mac_last]);
    c.kind = VendorKind::Other;
    c
}

fn request(c: &ClientProfile, ip: Ipv4Addr, server_id: Option<Ipv4Addr>) -> Message {
    let mut m = c.boot_request(7, Ipv4Addr::UNSPECIFIED, None);
    m.options.push(codes::REQUESTED_IP, &ip.octets());
    if let Some(s) = server_id {
        m.options.push(codes::SERVER_ID, &s.octets());
    }
    m
}

fn dora(s: &mut FullDhcp, c: &ClientProfile, now: u64) -> Ipv4Addr {
    let offer = s.handle(now, &c.discover(1)).unwrap();
    assert_eq!(offer.message.message_type(), Some(MessageType::Offer));
    assert_eq!(offer.to, Destination::Broadcast(68));
    let ip = offer.message.yiaddr;
    let ack = s.handle(now, &request(c, ip, Some(SERVER))).unwrap();
    assert_eq!(ack.message.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.message.yiaddr, ip);
    assert_eq!(
        ack.message.option(codes::LEASE_TIME).unwrap(),
        600u32.to_be_bytes()
    );
    ip
}

#[test]
fn discover_offer_request_ack_and_config_options() {
    let mut s = server(Leases::new());
    let c = plain(1);
    let offer = s.handle(0, &c.discover(1)).unwrap().message;
    assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 77, 0, 50));
    assert_eq!(
        offer.option(codes::SUBNET_MASK).unwrap(),
        [255, 255, 255, 0]
    );
    assert_eq!(offer.option(codes::ROUTER).unwrap(), SERVER.octets());
    assert_eq!(offer.option(codes::SERVER_ID).unwrap(), SERVER.octets());
    assert!(
        offer.option(codes::VENDOR_CLASS).is_none(),
        "plain clients get no PXE options"
    );
    assert_eq!(dora(&mut s, &c, 0), Ipv4Addr::new(10, 77, 0, 50));
    // A second client gets the next address, and the first keeps its own.
    assert_eq!(dora(&mut s, &plain(2), 1), Ipv4Addr::new(10, 77, 0, 51));
    assert_eq!(dora(&mut s, &c, 2), Ipv4Addr::new(10, 77, 0, 50));
    assert!(s.take_dirty());
}

#[test]
fn pxe_clients_get_boot_options_in_full_mode() {
    let mut s = server(Leases::new());
    let c = ClientProfile::bios([2, 0, 0, 0, 0, 7]);
    let offer = s.handle(0, &c.discover(1)).unwrap().message;
    assert!(!offer.yiaddr.is_unspecified());
    assert_eq!(offer.option(codes::VENDOR_CLASS).unwrap(), b"PXEClient");
    assert_eq!(offer.file_name().as_deref(), Some("undionly.kpxe"));
    assert_eq!(offer.siaddr, SERVER);
}

#[test]
fn pool_exhaustion_reservations_and_other_servers() {
    let mut s = server(Leases::new());
    for i in 1..=3 {
        dora(&mut s, &plain(i), 0);
    }
    assert!(matches!(
        s.handle(0, &plain(4).discover(1)),
        Err(Ignored::Silent(Silence::NoAddress))
    ));
    // The reserved MAC gets its address whatever the pool.
    assert_eq!(dora(&mut s, &plain(0x99), 0), Ipv4Addr::new(10, 77, 0, 99));
    // Leases expire: after 600 s the pool has room again.
    assert_eq!(
        s.handle(601, &plain(4).discover(1))
            .unwrap()
            .message
            .yiaddr
            .octets()[0],
        10
    );
    // A client that picked another server frees our offer.
    let c = plain(5);
    let offered = s.handle(602, &c.discover(1)).unwrap().message.yiaddr;
    let other = Ipv4Addr::new(10, 77, 0, 2);
    assert!(matches!(
        s.handle(602, &request(&c, offered, Some(other))),
        Err(Ignored::Silent(Silence::OtherServer(_)))
    ));
    assert!(
        s.leases()
            .get(offered)
            .is_none_or(|l| l.mac != [2, 0, 0, 0, 0, 5])
    );
}

#[test]
fn naks_and_init_reboot() {
    let mut s = server(Leases::new());
    let c = plain(1);
    let ip = dora(&mut s, &c, 0);
    // INIT-REBOOT with the right address: ACK; on another network: NAK.
    assert_eq!(
        s.handle(10, &request(&c, ip, None))
            .unwrap()
            .message
            .message_type(),
        Some(MessageType::Ack)
    );
    let nak = s
        .handle(10, &request(&c, Ipv4Addr::new(192, 168, 1, 5), None))
        .unwrap();
    assert_eq!(nak.message.message_type(), Some(MessageType::Nak));
    assert_eq!(nak.to, Destination::Broadcast(68));
    assert!(nak.message.yiaddr.is_unspecified());
    // Another client asking for that address: NAK.
    let nak = s.handle(10, &request(&plain(2), ip, Some(SERVER))).unwrap();
    assert_eq!(nak.message.message_type(), Some(MessageType::Nak));
    // An address in our subnet we know nothing about: silence (RFC 2131 §4.3.2).
    assert!(matches!(
        s.handle(10, &request(&plain(3), Ipv4Addr::new(10, 77, 0, 52), None)),
        Err(Ignored::Silent(Silence::NoRecord(_)))
    ));
    // RENEWING: unicast with ciaddr; the ACK goes to ciaddr:68.
    let mut renew = c.boot_request(9, ip, None);
    renew.options.remove(codes::VENDOR_CLASS);
    let ack = s.handle(20, &renew).unwrap();
    assert_eq!(ack.to, Destination::Unicast(SocketAddrV4::new(ip, 68)));
    assert_eq!(ack.message.ciaddr, ip);
}

#[test]
fn release_decline_inform() {
    let mut s = server(Leases::new());
    let c = plain(1);
    let ip = dora(&mut s, &c, 0);
    let mut release = c.boot_request(3, ip, None);
    release.options.set(codes::MESSAGE_TYPE, &[7]);
    assert!(matches!(
        s.handle(5, &release),
        Err(Ignored::Silent(Silence::Recorded))
    ));
    assert_eq!(s.leases().get(ip).unwrap().state, LeaseState::Released);
    // Released addresses go back to the same client first.
    assert_eq!(dora(&mut s, &c, 6), ip);
    // DECLINE: that address is taken out of use, the client gets another one.
    let mut decline = request(&c, ip, Some(SERVER));
    decline.options.set(codes::MESSAGE_TYPE, &[4]);
    assert!(matches!(
        s.handle(7, &decline),
        Err(Ignored::Silent(Silence::Recorded))
    ));
    assert_eq!(s.leases().get(ip).unwrap().state, LeaseState::Declined);
    assert_ne!(dora(&mut s, &c, 8), ip);
    // INFORM: configuration only, no lease, no yiaddr, unicast to ciaddr.
    let mut inform = c.boot_request(4, Ipv4Addr::new(10, 77, 0, 200), None);
    inform.options.set(codes::MESSAGE_TYPE, &[8]);
    let ack = s.handle(9, &inform).unwrap();
    assert_eq!(ack.message.message_type(), Some(MessageType::Ack));
    assert!(ack.message.yiaddr.is_unspecified());
    assert!(ack.message.option(codes::LEASE_TIME).is_none());
    assert!(ack.message.option(codes::SUBNET_MASK).is_some());
    assert_eq!(
        ack.to,
        Destination::Unicast(SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 200), 68))
    );
}

#[test]
fn relayed_clients_get_the_relay_subnet() {
    let mut s = server(Leases::new());
    let mut d = plain(1).discover(1);
    d.giaddr = Ipv4Addr::new(10, 77, 9, 1);
    let offer = s.handle(0, &d).unwrap();
    assert_eq!(offer.message.yiaddr, Ipv4Addr::new(10, 77, 9, 100));
    assert_eq!(offer.message.giaddr, d.giaddr);
    assert_eq!(
        offer.to,
        Destination::Unicast(SocketAddrV4::new(d.giaddr, 67))
    );
    d.giaddr = Ipv4Addr::new(172, 16, 0, 1);
    assert!(matches!(
        s.handle(0, &d),
        Err(Ignored::Silent(Silence::NoPool))
    ));
}

#[test]
fn leases_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.txt");
    let mut s = server(Leases::new());
    let ip = dora(&mut s, &plain(1), 0);
    dora(&mut s, &plain(2), 0);
    s.leases().save(&path).unwrap();
    let mut again = server(Leases::load(&path).unwrap());
    assert_eq!(again.leases(), s.leases());
    // The restarted server still knows client 1 (INIT-REBOOT is ACKed) and does not
    // give its address to a newcomer.
    assert_eq!(
        again
            .handle(10, &request(&plain(1), ip, None))
            .unwrap()
            .message
            .message_type(),
        Some(MessageType::Ack)
    );
    assert_ne!(
        again
            .handle(10, &plain(3).discover(1))
            .unwrap()
            .message
            .yiaddr,
        ip
    );
}

/// Answers one known MAC with its own script; everyone else is unknown.
struct KnownOnly([u8; 6]);

impl pxe::BootPolicy for KnownOnly {
    fn server_ip(&self) -> Ipv4Addr {
        SERVER
    }

    fn handle_boot_client(
        &self,
        client: &pxe::ClientInfo,
    ) -> Result<std::borrow::Cow<'_, Policy>, Silence> {
        if client.mac != Some(self.0) {
            return Err(Silence::UnknownMac);
        }
        let policy = Policy::new(SERVER).with_boot_file(ClientArch::X86Bios, "known.kpxe");
        Ok(std::borrow::Cow::Owned(policy))
    }
}

#[test]
fn a_boot_policy_hook_decides_boot_files_and_everyone_gets_an_address() {
    let known = [2, 0, 0, 0, 0, 7];
    let mut s = server(Leases::new()).with_boot_policy(std::sync::Arc::new(KnownOnly(known)));
    let offer = s
        .handle(0, &ClientProfile::bios(known).discover(1))
        .unwrap()
        .message;
    assert_eq!(offer.file_name().as_deref(), Some("known.kpxe"));
    // An unknown PXE client gets an address, but no boot file (not the static one).
    let offer = s
        .handle(0, &ClientProfile::bios([2, 0, 0, 0, 0, 8]).discover(1))
        .unwrap()
        .message;
    assert!(!offer.yiaddr.is_unspecified());
    assert_eq!(offer.file_name(), None);
}
