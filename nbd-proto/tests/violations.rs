//! Bad input over raw sockets: each protocol violation ends only that connection, each
//! bad option or request gets the reply the spec asks for, and the server keeps
//! serving a fresh client afterwards.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use nbd_proto::driver::server::ServerConfig;
use nbd_proto::server::handshake::HandshakeConfig;
use nbd_proto::wire::consts::*;
use nbd_proto::wire::option::{
    ClientOption, InfoRequest, MetaContextRequest, OptionHeader, OptionReplyHeader,
};
use nbd_proto::wire::reply::ReplyHeader;
use nbd_proto::wire::request::{Command, Request};
use nbd_proto::{Errno, MemoryExport, SingleExport};

/// Connects and reads the greeting; sends `flags`.
fn connect(server: &TestServer, flags: u32) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0; 18];
    s.read_exact(&mut greeting).unwrap();
    assert_eq!(
        &greeting[..16],
        &[NBD_INIT_PASSWD.to_be_bytes(), NBD_OPTS_MAGIC.to_be_bytes()].concat()[..]
    );
    assert_eq!(
        u16::from_be_bytes([greeting[16], greeting[17]]),
        NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES
    );
    s.write_all(&flags.to_be_bytes()).unwrap();
    s
}

fn send(s: &mut TcpStream, opt: &ClientOption) {
    let mut out = Vec::new();
    opt.emit(&mut out);
    s.write_all(&out).unwrap();
}

/// Reads one option reply: its type and data.
fn reply(s: &mut TcpStream) -> (u32, Vec<u8>) {
    let mut head = [0; OPTION_REPLY_HEADER_LEN];
    s.read_exact(&mut head).unwrap();
    let h = OptionReplyHeader::parse(&head).unwrap();
    let mut data = vec![0; h.len as usize];
    s.read_exact(&mut data).unwrap();
    (h.reply_type, data)
}

/// True when the server closed the connection (EOF, or reset).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// Negotiates structured replies and GO on `disk`; returns the stream in transmission.
fn go(server: &TestServer) -> TcpStream {
    let mut s = connect(server, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    send(
        &mut s,
        &ClientOption::Go(InfoRequest {
            name: "disk".into(),
            requests: vec![],
        }),
    );
    loop {
        let (t, _) = reply(&mut s);
        if t == NBD_REP_ACK {
            return s;
        }
        assert_eq!(t, NBD_REP_INFO);
    }
}

fn request(s: &mut TcpStream, command: Command, flags: u16, offset: u64, length: u32) {
    let mut out = Vec::new();
    Request {
        flags,
        command,
        cookie: 0xc00c1e,
        offset,
        length,
    }
    .emit(&mut out);
    s.write_all(&out).unwrap();
}

fn simple_reply(s: &mut TcpStream) -> Errno {
    let mut head = [0; SIMPLE_REPLY_HEADER_LEN];
    s.read_exact(&mut head).unwrap();
    match ReplyHeader::parse(&head).unwrap() {
        ReplyHeader::Simple { error, cookie } => {
            assert_eq!(cookie, 0xc00c1e);
            error
        }
        other => panic!("expected a simple reply, got {other:?}"),
    }
}

/// A fresh client still gets through a whole handshake and a read.
fn still_serves(server: &TestServer) {
    let mut s = go(server);
    request(&mut s, Command::Read, 0, 0, 512);
    assert_eq!(simple_reply(&mut s), Errno(0));
    let mut data = [0; 512];
    s.read_exact(&mut data).unwrap();
}

fn server() -> TestServer {
    TestServer::memory("disk", 1 << 20).0
}

#[test]
fn unknown_client_flags_close_the_connection() {
    let server = server();
    let mut s = connect(&server, 1 << 5);
    assert!(closed(&mut s));
    still_serves(&server);
}

#[test]
fn unknown_options_get_err_unsup_and_parsing_goes_on() {
    let server = server();
    let mut s = connect(&server, NBD_FLAG_C_FIXED_NEWSTYLE);
    // Unknown, withdrawn and unimplemented options, one with data.
    for code in [4242, NBD_OPT_PEEK_EXPORT, NBD_OPT_EXTENDED_HEADERS] {
        let mut out = Vec::new();
        OptionHeader {
            option: code,
            len: 3,
        }
        .emit(&mut out);
        out.extend_from_slice(b"abc");
        s.write_all(&out).unwrap();
        assert_eq!(reply(&mut s).0, NBD_REP_ERR_UNSUP);
    }
    send(&mut s, &ClientOption::StartTls { has_data: false });
    assert_eq!(
        reply(&mut s).0,
        NBD_REP_ERR_UNSUP,
        "STARTTLS must not be ERR_TLS_REQD"
    );
    send(&mut s, &ClientOption::List { has_data: false });
    let (t, data) = reply(&mut s);
    assert_eq!(t, NBD_REP_SERVER);
    assert_eq!(&data[4..], b"disk");
    assert_eq!(reply(&mut s).0, NBD_REP_ACK);
    // LIST with data is invalid but harmless.
    let mut out = Vec::new();
    OptionHeader {
        option: NBD_OPT_LIST,
        len: 1,
    }
    .emit(&mut out);
    out.push(0);
    s.write_all(&out).unwrap();
    assert_eq!(reply(&mut s).0, NBD_REP_ERR_INVALID);
    // INFO on an unknown export, then a malformed INFO.
    send(
        &mut s,
        &ClientOption::Info(InfoRequest {
            name: "nope".into(),
            requests: vec![],
        }),
    );
    assert_eq!(reply(&mut s).0, NBD_REP_ERR_UNKNOWN);
    let mut out = Vec::new();
    OptionHeader {
        option: NBD_OPT_INFO,
        len: 6,
    }
    .emit(&mut out);
    out.extend_from_slice(&[0, 0, 0, 200, 0, 0]);
    s.write_all(&out).unwrap();
    assert_eq!(reply(&mut s).0, NBD_REP_ERR_INVALID);
    // INFO with NAME and BLOCK_SIZE: INFO_EXPORT first, then the asked ones, then ACK.
    let info = InfoRequest {
        name: "disk".into(),
        requests: vec![NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE, 999],
    };
    send(&mut s, &ClientOption::Info(info));
    let mut types = Vec::new();
    loop {
        let (t, data) = reply(&mut s);
        if t == NBD_REP_ACK {
            break;
        }
        assert_eq!(t, NBD_REP_INFO);
        types.push(u16::from_be_bytes([data[0], data[1]]));
    }
    assert_eq!(types, [NBD_INFO_EXPORT, NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE]);
    send(&mut s, &ClientOption::Abort);
    assert_eq!(reply(&mut s).0, NBD_REP_ACK);
    assert!(closed(&mut s));
    still_serves(&server);
}

#[test]
fn meta_contexts_follow_the_rules() {
    let server = server();
    let mut s = connect(&server, NBD_FLAG_C_FIXED_NEWSTYLE);
    let req = |q: &[&str]| MetaContextRequest {
        name: "disk".into(),
        queries: q.iter().map(|s| s.to_string()).collect(),
    };
    // Before structured replies: invalid.
    send(
        &mut s,
        &ClientOption::SetMetaContext(req(&["base:allocation"])),
    );
    assert_eq!(reply(&mut s).0, NBD_REP_ERR_INVALID);
    send(&mut s, &ClientOption::StructuredReply { has_data: false });
    assert_eq!(reply(&mut s).0, NBD_REP_ACK);
    send(&mut s, &ClientOption::StructuredReply { has_data: false });
    assert_eq!(
        reply(&mut s).0,
        NBD_REP_ERR_INVALID,
        "a second STRUCTURED_REPLY"
    );
    for (queries, listed) in [
        (&[][..], true),
        (&["base:"][..], true),
        (&["qemu:dirty-bitmap:x"][..], false),
    ] {
        send(&mut s, &ClientOption::ListMetaContext(req(queries)));
        let (t, data) = reply(&mut s);
        if listed {
            assert_eq!(t, NBD_REP_META_CONTEXT, "{queries:?}");
            assert_eq!(&data[4..], b"base:allocation");
            assert_eq!(reply(&mut s).0, NBD_REP_ACK);
        } else {
            assert_eq!(t, NBD_REP_ACK, "{queries:?}");
        }
    }
    // SET ignores `base:` and unknown leaves.
    send(
        &mut s,
        &ClientOption::SetMetaContext(req(&["base:", "base:nope"])),
    );
    assert_eq!(reply(&mut s).0, NBD_REP_ACK);
    send(
        &mut s,
        &ClientOption::SetMetaContext(req(&["base:allocation"])),
    );
    let (t, data) = reply(&mut s);
    assert_eq!(t, NBD_REP_META_CONTEXT);
    assert_ne!(u32::from_be_bytes(data[..4].try_into().unwrap()), 0);
    assert_eq!(reply(&mut s).0, NBD_REP_ACK);
    // A query count that overruns the data is invalid.
    let mut out = Vec::new();
    OptionHeader {
        option: NBD_OPT_LIST_META_CONTEXT,
        len: 8,
    }
    .emit(&mut out);
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
    s.write_all(&out).unwrap();
    assert_eq!(reply(&mut s).0, NBD_REP_ERR_INVALID);
}

#[test]
fn oversized_options_are_skipped_not_buffered() {
    let server = server();
    let mut s = connect(&server, NBD_FLAG_C_FIXED_NEWSTYLE);
    for (code, expected) in [
        (4242, NBD_REP_ERR_UNSUP),
        (NBD_OPT_INFO, NBD_REP_ERR_TOO_BIG),
    ] {
        let mut out = Vec::new();
        OptionHeader {
            option: code,
            len: 1 << 20,
        }
        .emit(&mut out);
        out.resize(out.len() + (1 << 20), 0x55);
        s.write_all(&out).unwrap();
        assert_eq!(reply(&mut s).0, expected);
    }
    still_serves(&server);
}

#[test]
fn bad_option_magic_closes() {
    let server = server();
    let mut s = connect(&server, NBD_FLAG_C_FIXED_NEWSTYLE);
    s.write_all(&[0x42; 16]).unwrap();
    assert!(closed(&mut s));
    still_serves(&server);
}

#[test]
fn export_name_with_and_without_zeroes_and_refusal() {
    let server = server();
    for (flags, len) in [
        (NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES, 10),
        (NBD_FLAG_C_FIXED_NEWSTYLE, 134),
    ] {
        let mut s = connect(&server, flags);
        send(&mut s, &ClientOption::ExportName("disk".into()));
        let mut reply = vec![0; len];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(u64::from_be_bytes(reply[..8].try_into().unwrap()), 1 << 20);
        request(&mut s, Command::Disc, 0, 0, 0);
        assert!(closed(&mut s), "DISC must close");
    }
    let mut s = connect(&server, NBD_FLAG_C_FIXED_NEWSTYLE);
    send(&mut s, &ClientOption::ExportName("nope".into()));
    assert!(closed(&mut s), "unknown EXPORT_NAME must end the session");
    still_serves(&server);
}

#[test]
fn bad_request_magic_closes_only_that_connection() {
    let server = server();
    let mut other = go(&server);
    let mut s = go(&server);
    s.write_all(&[0x99; 28]).unwrap();
    assert!(closed(&mut s));
    request(&mut other, Command::Read, 0, 0, 16);
    assert_eq!(simple_reply(&mut other), Errno(0));
    still_serves(&server);
}

#[test]
fn write_beyond_the_maximum_payload_closes() {
    let server = server();
    let mut s = go(&server);
    request(&mut s, Command::Write, 0, 0, (32 << 20) + 1);
    assert!(closed(&mut s));
    still_serves(&server);
}

#[test]
fn unknown_commands_and_rejected_writes_keep_the_stream_in_sync() {
    let server = server();
    let mut s = go(&server);
    request(&mut s, Command::Unknown(42), 0, 0, 0);
    assert_eq!(simple_reply(&mut s), Errno::EINVAL);
    // A write past the end: its payload is consumed, ENOSPC, and the stream goes on.
    request(&mut s, Command::Write, 0, (1 << 20) - 2, 100);
    s.write_all(&[7; 100]).unwrap();
    assert_eq!(simple_reply(&mut s), Errno::ENOSPC);
    // A READ beyond the maximum block size is EINVAL (no payload to lose sync on).
    request(&mut s, Command::Read, 0, 0, u32::MAX);
    assert_eq!(simple_reply(&mut s), Errno::EINVAL);
    request(&mut s, Command::Read, NBD_CMD_FLAG_DF, 0, 16);
    assert_eq!(
        simple_reply(&mut s),
        Errno::EINVAL,
        "DF without structured replies"
    );
    request(&mut s, Command::Flush, 0, 0, 0);
    assert_eq!(simple_reply(&mut s), Errno(0));
}

#[test]
fn stalled_handshakes_time_out() {
    let config = ServerConfig {
        handshake: HandshakeConfig {
            timeout: Duration::from_millis(300),
            ..HandshakeConfig::default()
        },
        ..ServerConfig::default()
    };
    let provider = Arc::new(SingleExport::new(
        "disk",
        Arc::new(MemoryExport::new(vec![0; 4096])),
    ));
    let server = TestServer::start(provider, config);
    let mut s = connect(&server, NBD_FLAG_C_FIXED_NEWSTYLE);
    assert!(
        closed(&mut s),
        "the server must drop a client that never finishes"
    );
}

/// An export whose reads wait until the test lets them go.
struct Gate {
    started: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl nbd_proto::Export for Gate {
    fn size(&self) -> u64 {
        4096
    }
    fn capabilities(&self) -> nbd_proto::Capabilities {
        nbd_proto::Capabilities::empty()
    }
    fn read(&self, buf: &mut [u8], _offset: u64) -> Result<(), Errno> {
        self.started.lock().unwrap().send(()).unwrap();
        self.release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10))
            .unwrap();
        buf.fill(9);
        Ok(())
    }
}

#[test]
fn connection_limit_and_clean_shutdown() {
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let gate = Gate {
        started: started_tx.into(),
        release: release_rx.into(),
    };
    let config = ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    };
    let server = TestServer::start(Arc::new(SingleExport::new("disk", Arc::new(gate))), config);
    let mut a = go(&server);
    let _b = go(&server);
    let mut c = TcpStream::connect(server.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(closed(&mut c), "a third connection must be refused");
    // A request in flight while shutting down still gets its reply, then the close.
    request(&mut a, Command::Read, 0, 0, 512);
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    server.trigger_shutdown();
    release.send(()).unwrap();
    assert_eq!(simple_reply(&mut a), Errno(0));
    let mut data = [0; 512];
    a.read_exact(&mut data).unwrap();
    assert_eq!(data, [9; 512]);
    assert!(closed(&mut a));
    server.shutdown();
}
