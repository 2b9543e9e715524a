//! Entry points of the fuzz targets (`fuzz/fuzz_targets/nbd_*.rs`), here so that the
//! seed corpus replay test and the fuzzer call the very same code. Each feeds arbitrary
//! bytes to the sessions and checks that they never panic and that what the server
//! sends back is well formed.

use std::sync::Arc;
use std::time::Instant;

use crate::client::handshake::{ClientConfig, ClientHandshake};
use crate::client::transmission::ClientTransmission;
use crate::export::{MemoryExport, SingleExport};
use crate::server::handshake::{Handshake, HandshakeConfig, Progress};
use crate::server::transmission::{Route, RoutePolicy, Transmission};
use crate::wire::consts::*;
use crate::wire::option::OptionReplyHeader;
use crate::wire::reply::ReplyHeader;
use crate::wire::request::Command;

fn provider() -> SingleExport {
    SingleExport::new("disk", Arc::new(MemoryExport::new(vec![0x5a; 1 << 16])))
}

/// Feeds `data` to a server handshake (in chunks sized by the first byte), checks that
/// every option reply it writes parses, and feeds the same bytes to a client handshake.
pub fn handshake(data: &[u8]) {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let provider = provider();
    let peer = "127.0.0.1:1".parse().expect("literal address");
    let config = HandshakeConfig {
        max_option_len: 512,
        ..HandshakeConfig::default()
    };
    let mut hs = Handshake::new(peer, Instant::now(), config);
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let greeting = hs.take_output();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match hs.handle_input(&buf, &provider) {
                Ok((used, progress)) => {
                    buf.drain(..used);
                    replies.extend(hs.take_output());
                    match progress {
                        Progress::NeedMore if used > 0 => continue,
                        Progress::NeedMore => break,
                        Progress::Close | Progress::Transmission(_) => {
                            return check_option_replies(&replies);
                        }
                    }
                }
                Err(_) => return check_option_replies(&replies),
            }
        }
    }
    check_option_replies(&replies);
    // The client side reading arbitrary server bytes.
    let mut client = ClientHandshake::new(ClientConfig {
        export: "disk".into(),
        structured: true,
        base_allocation: true,
    });
    let mut server_bytes = greeting;
    server_bytes.extend_from_slice(input);
    let mut pos = 0;
    while let Ok((used, None)) = client.handle_input(&server_bytes[pos..]) {
        if used == 0 {
            break;
        }
        pos += used;
    }
}

/// Every byte the server wrote during options must be a sequence of option replies,
/// except the EXPORT_NAME answer (size and flags) which may end it.
fn check_option_replies(mut out: &[u8]) {
    while out.len() >= OPTION_REPLY_HEADER_LEN {
        let Ok(h) = OptionReplyHeader::parse(out) else {
            assert!(
                out.len() == 10 || out.len() == 134,
                "server wrote garbage in the handshake"
            );
            return;
        };
        let total = OPTION_REPLY_HEADER_LEN + h.len as usize;
        assert!(out.len() >= total, "truncated option reply");
        out = &out[total..];
    }
    assert!(
        out.is_empty() || out.len() == 10,
        "trailing handshake bytes"
    );
}

/// Decodes `data` as a stream of transmission requests against a 64 KiB export (the
/// first byte picks structured replies, `base:allocation` and the route policy's zero
/// copy), serves each as the driver does (routed once, the route followed), checks
/// each reply's framing and cookie, then feeds the bytes to a client as if they were
/// replies.
pub fn transmission(data: &[u8]) {
    let Some((&mode, mut input)) = data.split_first() else {
        return;
    };
    let mut neg = {
        let provider = provider();
        let peer = "127.0.0.1:1".parse().expect("literal address");
        let mut hs = Handshake::new(peer, Instant::now(), HandshakeConfig::default());
        let mut opts = 1u32.to_be_bytes().to_vec();
        crate::wire::option::ClientOption::Go(crate::wire::option::InfoRequest {
            name: "disk".into(),
            requests: vec![],
        })
        .emit(&mut opts);
        let (used, _) = hs.handle_input(&opts, &provider).expect("client flags");
        match hs.handle_input(&opts[used..], &provider) {
            Ok((_, Progress::Transmission(n))) => *n,
            _ => unreachable!("GO on the only export succeeds"),
        }
    };
    neg.structured = mode & 1 != 0;
    neg.base_allocation = (mode & 2 != 0 && neg.structured).then_some(1);
    let session = Transmission::new(neg);
    let mut replies = Vec::new();
    while let Ok(Some(req)) = session.decode(input) {
        input = &input[REQUEST_HEADER_LEN..];
        let n = req.payload_len().min(input.len());
        let (payload, rest) = input.split_at(n);
        input = rest;
        if payload.len() < req.payload_len() {
            break;
        }
        // Served as the driver serves it: routed once, then the route followed (the
        // memory export locates nothing, so a READ is executed).
        let policy = RoutePolicy {
            zero_copy: mode & 4 != 0,
            zero_copy_min: 16 << 10,
            inline_max_len: 64 << 10,
        };
        let mut reply = Vec::new();
        match session.route(&req, &policy, |_| true) {
            Route::Reject(errno) => reply = session.error_reply(&req, errno, None),
            Route::Disconnect => {}
            Route::Execute { op, .. } => session.execute_op(&req, op, payload, &mut reply),
            Route::ZeroCopy(parts) | Route::Gather { parts, .. } => {
                session.gather_into(&req, parts, &mut reply)
            }
        }
        if req.command == Command::Disc {
            assert!(reply.is_empty());
            break;
        }
        let header = ReplyHeader::parse(&reply).expect("our reply parses");
        assert_eq!(header.cookie(), req.cookie);
        replies.extend_from_slice(&reply);
    }
    // A client reading arbitrary reply bytes with a few requests pending.
    let mut client = ClientTransmission::new(mode & 1 != 0);
    let mut sink = Vec::new();
    for (i, cmd) in [Command::Read, Command::BlockStatus, Command::Write]
        .into_iter()
        .enumerate()
    {
        client.request(cmd, 0, (i as u64) << 12, 4096, &[], &mut sink);
    }
    let mut pos = 0;
    let bytes = &data[1..];
    while let Ok((used, _)) = client.handle_input(&bytes[pos..]) {
        if used == 0 {
            break;
        }
        pos += used;
    }
}
