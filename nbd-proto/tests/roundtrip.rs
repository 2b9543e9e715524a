//! Property tests: every wire value survives emit -> parse, and the server sessions
//! never panic on arbitrary option or request fields.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nbd_proto::server::handshake::{Handshake, HandshakeConfig, Progress};
use nbd_proto::wire::consts::*;
use nbd_proto::wire::option::{ClientOption, Info, InfoRequest, MetaContextRequest, OptionHeader};
use nbd_proto::wire::reply::{self, BlockDescriptor, ReplyHeader};
use nbd_proto::wire::request::{Command, Request};
use nbd_proto::{Errno, MemoryExport, SingleExport};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:/._-]{0,40}"
}

fn option() -> impl Strategy<Value = ClientOption> {
    prop_oneof![
        name().prop_map(ClientOption::ExportName),
        (name(), proptest::collection::vec(any::<u16>(), 0..8))
            .prop_map(|(name, requests)| ClientOption::Go(InfoRequest { name, requests })),
        (name(), proptest::collection::vec(any::<u16>(), 0..8))
            .prop_map(|(name, requests)| ClientOption::Info(InfoRequest { name, requests })),
        (name(), proptest::collection::vec(name(), 0..5)).prop_map(|(name, queries)| {
            ClientOption::ListMetaContext(MetaContextRequest { name, queries })
        }),
        (name(), proptest::collection::vec(name(), 0..5)).prop_map(|(name, queries)| {
            ClientOption::SetMetaContext(MetaContextRequest { name, queries })
        }),
        (12u32..10_000).prop_map(ClientOption::Unknown),
    ]
}

proptest! {
    #[test]
    fn options_round_trip(opt in option()) {
        let mut out = Vec::new();
        opt.emit(&mut out);
        let h = OptionHeader::parse(&out).unwrap();
        prop_assert_eq!(ClientOption::parse(h.option, &out[OPTION_HEADER_LEN..]).unwrap(), opt);
    }

    #[test]
    fn requests_round_trip(flags: u16, cmd: u16, cookie: u64, offset: u64, length: u32) {
        let req = Request { flags, command: Command::from_u16(cmd), cookie, offset, length };
        let mut out = Vec::new();
        req.emit(&mut out);
        prop_assert_eq!(Request::parse(&out).unwrap(), req);
    }

    #[test]
    fn info_round_trips(size: u64, flags: u16, min: u32, preferred: u32, max: u32, n in name()) {
        for info in [Info::Export { size, flags }, Info::BlockSize { min, preferred, max }, Info::Name(n.clone()), Info::Description(n.clone())] {
            prop_assert_eq!(Info::parse(&info.to_bytes()).unwrap(), info);
        }
    }

    #[test]
    fn block_status_round_trips(cookie: u64, id: u32, d in proptest::collection::vec((1u32.., any::<u32>()), 1..20)) {
        let d: Vec<BlockDescriptor> = d.into_iter().map(|(length, flags)| BlockDescriptor { length, flags }).collect();
        let mut out = Vec::new();
        reply::emit_block_status(&mut out, true, cookie, id, &d);
        let h = ReplyHeader::parse(&out).unwrap();
        prop_assert_eq!(h.cookie(), cookie);
        prop_assert_eq!(reply::parse_block_status(&out[STRUCTURED_REPLY_HEADER_LEN..]).unwrap(), (id, d));
    }

    /// Any request against a 64 KiB export gets exactly one well-framed reply with its
    /// cookie, and out-of-range requests are refused, never executed.
    #[test]
    fn every_request_gets_a_framed_reply(flags in 0u16..64, cmd in 0u16..10, offset in 0u64..70_000, length in 0u32..70_000, structured: bool) {
        let provider = SingleExport::new("d", Arc::new(MemoryExport::new(vec![3; 65536])));
        let mut hs = Handshake::new("127.0.0.1:9".parse().unwrap(), Instant::now(), HandshakeConfig::default());
        let mut input = 1u32.to_be_bytes().to_vec();
        if structured {
            ClientOption::StructuredReply { has_data: false }.emit(&mut input);
            ClientOption::SetMetaContext(MetaContextRequest { name: "d".into(), queries: vec![BASE_ALLOCATION.into()] }).emit(&mut input);
        }
        ClientOption::Go(InfoRequest { name: "d".into(), requests: vec![] }).emit(&mut input);
        let mut pos = 0;
        let neg = loop {
            let (used, p) = hs.handle_input(&input[pos..], &provider).unwrap();
            pos += used;
            if let Progress::Transmission(n) = p { break n; }
        };
        let session = nbd_proto::server::transmission::Transmission::new(*neg);
        let command = Command::from_u16(cmd);
        let req = Request { flags, command, cookie: 77, offset, length };
        let payload = vec![9; req.payload_len()];
        let reply = session.execute(&req, &payload);
        if command == Command::Disc {
            prop_assert!(reply.is_empty());
            return Ok(());
        }
        let h = ReplyHeader::parse(&reply).unwrap();
        prop_assert_eq!(h.cookie(), 77);
        let in_range = offset + u64::from(length) <= 65536 && length > 0;
        if !in_range && command != Command::Flush {
            let failed = match h {
                ReplyHeader::Simple { error, .. } => error != Errno(0),
                ReplyHeader::Structured { chunk_type, .. } => chunk_type & 0x8000 != 0,
            };
            prop_assert!(failed, "{req:?} succeeded");
        }
    }
}

#[test]
fn handshake_deadline_is_virtual_time() {
    let start = Instant::now();
    let config = HandshakeConfig {
        timeout: Duration::from_secs(30),
        ..HandshakeConfig::default()
    };
    let mut hs = Handshake::new("127.0.0.1:9".parse().unwrap(), start, config);
    assert_eq!(hs.deadline(), start + Duration::from_secs(30));
    assert!(!hs.handle_timeout(start + Duration::from_secs(29)));
    assert!(hs.handle_timeout(start + Duration::from_secs(30)));
}
