//! Entry points shared by the cargo-fuzz targets (`fuzz/fuzz_targets/pxe_*.rs`) and the
//! seed-corpus replay test, so stable CI runs the same code the fuzzer does.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::options::{
    ClientArch, IpxeOptions, MachineId, NetworkInterfaceId, PxeVendor, UserClass, VendorClass,
};
use crate::policy::{Menu, MenuEntry, Policy};
use crate::rivals::Rivals;
use crate::wire::Message;

fn policy() -> Policy {
    let mut p = Policy::new(Ipv4Addr::new(10, 77, 0, 1))
        .with_boot_file(ClientArch::X86Bios, "undionly.kpxe")
        .with_boot_file(ClientArch::EfiX64Http, "http://10.77.0.1/ipxe.efi");
    p.menu = Some(Menu {
        prompt: "menu".into(),
        timeout: 5,
        entries: vec![MenuEntry {
            text: "A".into(),
            boot_file: Some("a.0".into()),
            arches: vec![],
        }],
    });
    p
}

/// Arbitrary bytes as a DHCP message: decode, re-encode (must be identical), and run
/// every decision on it. Panics only on a real bug.
pub fn message(data: &[u8]) {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    assert_eq!(
        msg.encode(),
        data,
        "re-encoding a parsed message changed it"
    );
    let p = policy();
    if let Ok(reply) = crate::proxy::offer(&msg, &p) {
        let bytes = reply.message.encode();
        assert_eq!(
            Message::parse(&bytes).expect("our offer parses").encode(),
            bytes
        );
    }
    let src = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 50), 68);
    let _ = crate::proxy::boot_ack(&msg, src, &p);
    let mut rivals = Rivals::new([p.server_ip]);
    let _ = rivals.observe(Ipv4Addr::new(10, 77, 0, 2), &msg);
    let _ = crate::request::ClientInfo::from_message(&msg);
}

/// Arbitrary bytes into every typed option parser; what parses must round-trip.
pub fn options(data: &[u8]) {
    if let Ok(v) = PxeVendor::parse(data)
        && let Ok(bytes) = v.encode()
    {
        assert_eq!(PxeVendor::parse(&bytes).expect("re-parse option 43"), v);
    }
    if let Ok(o) = IpxeOptions::parse(data) {
        assert_eq!(
            IpxeOptions::parse(&o.encode()).expect("re-parse option 175"),
            o
        );
    }
    if let Ok(list) = ClientArch::parse_list(data) {
        assert_eq!(ClientArch::encode_list(&list), data);
    }
    if let Ok(id) = MachineId::parse(data) {
        assert_eq!(id.encode(), data);
        let _ = id.to_string();
    }
    if let Ok(n) = NetworkInterfaceId::parse(data) {
        assert_eq!(n.encode(), data);
    }
    let _ = VendorClass::parse(data);
    let _ = UserClass::parse(data).is_ipxe();
    let _ = crate::ra::is_router_solicitation(data);
}
