//! Property tests: encode/parse are inverses for messages and typed options.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use pxe::Message;
use pxe::options::{
    BootItem, ClientArch, IpxeOptions, MenuItem, MenuPrompt, PxeSubOption, PxeVendor,
};
use pxe::wire::OptionEntry;

fn entry() -> impl Strategy<Value = OptionEntry> {
    prop_oneof![
        Just(OptionEntry {
            code: 0,
            data: vec![]
        }),
        (1u8..255, prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(code, data)| OptionEntry { code, data }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<(u8, u8, u8, u8, u32, u16, u16)>(),
        any::<[u32; 4]>(),
        any::<[u8; 16]>(),
        prop::collection::vec(entry(), 0..20),
        prop::collection::vec(any::<u8>(), 0..60),
    )
        .prop_map(
            |((op, htype, hlen, hops, xid, secs, flags), ips, chaddr, entries, trailer)| {
                let mut m = Message {
                    op: op.into(),
                    htype,
                    hlen,
                    hops,
                    xid,
                    secs,
                    flags,
                    ciaddr: Ipv4Addr::from(ips[0]),
                    yiaddr: Ipv4Addr::from(ips[1]),
                    siaddr: Ipv4Addr::from(ips[2]),
                    giaddr: Ipv4Addr::from(ips[3]),
                    chaddr,
                    trailer,
                    ..Message::default()
                };
                // Option 52 would make sname/file option areas; keep it out of random lists.
                *m.options.entries_mut() = entries.into_iter().filter(|e| e.code != 52).collect();
                m
            },
        )
}

proptest! {
    #[test]
    fn message_round_trips(m in message()) {
        let bytes = m.encode();
        let back = Message::parse(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        let _ = Message::parse(&bytes);
        let _ = PxeVendor::parse(&bytes);
        let _ = IpxeOptions::parse(&bytes);
    }

    #[test]
    fn arch_list_round_trips(list in prop::collection::vec(any::<u16>(), 1..8)) {
        let arches: Vec<ClientArch> = list.iter().map(|&n| ClientArch::from_u16(n)).collect();
        let bytes = ClientArch::encode_list(&arches);
        prop_assert_eq!(ClientArch::parse_list(&bytes).unwrap(), arches);
    }

    #[test]
    fn pxe_vendor_round_trips(
        control in any::<u8>(),
        items in prop::collection::vec((any::<u16>(), "[ -~]{0,40}"), 0..5),
        timeout in any::<u8>(),
        item in any::<(u16, u16)>(),
    ) {
        let v = PxeVendor { items: vec![
            PxeSubOption::DiscoveryControl(control),
            PxeSubOption::BootMenu(items.iter().map(|(k, t)| MenuItem { kind: *k, text: t.as_bytes().to_vec() }).collect()),
            PxeSubOption::MenuPrompt(MenuPrompt { timeout, text: b"p".to_vec() }),
            PxeSubOption::BootItem(BootItem { kind: item.0, layer: item.1 }),
        ]};
        prop_assert_eq!(PxeVendor::parse(&v.encode().unwrap()).unwrap(), v);
    }

    #[test]
    fn long_options_split_and_concatenate(len in 0usize..1000) {
        let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut m = Message::default();
        m.options.push(43, &value);
        let back = Message::parse(&m.encode()).unwrap();
        prop_assert_eq!(back.option(43).unwrap(), value);
    }
}
