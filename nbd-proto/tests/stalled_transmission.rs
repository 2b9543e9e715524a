//! Clients that stall in the transmission phase, in the middle of a request: a WRITE
//! header that announces a payload, half of it, then silence (or half a request header).
//! The server keeps serving other clients, its memory grows with what the stalled clients
//! sent rather than with what they announced, and a stalled request ends its connection
//! after `ServerConfig::request_timeout` (idle time between requests is not limited), and
//! so does a client that leaves its replies unread.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use nbd_proto::driver::server::ServerConfig;
use nbd_proto::wire::consts::*;
use nbd_proto::wire::option::{ClientOption, InfoRequest, OptionReplyHeader};
use nbd_proto::wire::reply::ReplyHeader;
use nbd_proto::wire::request::{Command, Request};
use nbd_proto::{Errno, MemoryExport, SingleExport};

/// The memory test reads this process's RSS: keep the other tests of this file out of it.
static SERIAL: Mutex<()> = Mutex::new(());

const EXPORT_SIZE: usize = 8 << 20;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn server(config: ServerConfig) -> TestServer {
    let export = Arc::new(MemoryExport::new(vec![0; EXPORT_SIZE]));
    TestServer::start(Arc::new(SingleExport::new("disk", export)), config)
}

/// Handshake (fixed newstyle, no zeroes, GO on `disk`); returns the stream in transmission.
fn go(server: &TestServer) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut greeting = [0; 18];
    s.read_exact(&mut greeting).unwrap();
    s.write_all(&(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();
    let mut out = Vec::new();
    ClientOption::Go(InfoRequest {
        name: "disk".into(),
        requests: vec![],
    })
    .emit(&mut out);
    s.write_all(&out).unwrap();
    loop {
        let mut head = [0; OPTION_REPLY_HEADER_LEN];
        s.read_exact(&mut head).unwrap();
        let h = OptionReplyHeader::parse(&head).unwrap();
        let mut data = vec![0; h.len as usize];
        s.read_exact(&mut data).unwrap();
        if h.reply_type == NBD_REP_ACK {
            return s;
        }
        assert_eq!(h.reply_type, NBD_REP_INFO);
    }
}

fn header(command: Command, offset: u64, length: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Request {
        flags: 0,
        command,
        cookie: offset ^ 0xc00c1e,
        offset,
        length,
    }
    .emit(&mut out);
    out
}

fn simple_reply(s: &mut TcpStream, offset: u64) -> Errno {
    let mut head = [0; SIMPLE_REPLY_HEADER_LEN];
    s.read_exact(&mut head).unwrap();
    match ReplyHeader::parse(&head).unwrap() {
        ReplyHeader::Simple { error, cookie } => {
            assert_eq!(cookie, offset ^ 0xc00c1e);
            error
        }
        other => panic!("expected a simple reply, got {other:?}"),
    }
}

/// A well-behaved client: writes 64 KiB at `offset` and reads them back.
fn normal_client(server: &TestServer, offset: u64, seed: u8) {
    let mut s = go(server);
    let data: Vec<u8> = (0..64 << 10).map(|i: u32| (i as u8) ^ seed).collect();
    s.write_all(&header(Command::Write, offset, 64 << 10))
        .unwrap();
    s.write_all(&data).unwrap();
    assert_eq!(simple_reply(&mut s, offset), Errno(0));
    s.write_all(&header(Command::Read, offset, 64 << 10))
        .unwrap();
    assert_eq!(simple_reply(&mut s, offset), Errno(0));
    let mut back = vec![0; 64 << 10];
    s.read_exact(&mut back).unwrap();
    assert!(back == data, "a normal client reads back what it wrote");
}

/// True when the server closed the connection (EOF or reset) before `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected data from the server"),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Makes sure this process may open `needed` descriptors (client and server ends of every
/// connection live here), raising the soft limit up to the hard one with prlimit(1).
fn ensure_open_files(needed: u64) -> bool {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files in /proc/self/limits");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let parse = |v: &str| {
        if v == "unlimited" {
            u64::MAX
        } else {
            v.parse().unwrap()
        }
    };
    let (soft, hard) = (parse(fields[3]), parse(fields[4]));
    if soft >= needed {
        return true;
    }
    let ok = hard >= needed
        && testkit::find_program("prlimit").is_some_and(|prlimit| {
            std::process::Command::new(prlimit)
                .arg(format!("--pid={}", std::process::id()))
                .arg(format!("--nofile={needed}:{}", fields[4]))
                .status()
                .is_ok_and(|s| s.success())
        });
    if !ok {
        assert!(
            !testkit::in_ci(),
            "this test needs {needed} open files (soft limit {soft}, hard {hard}) under CI=true; \
             raise `ulimit -n` or install util-linux's prlimit"
        );
        eprintln!("SKIPPED: needs {needed} open files, the limit is {soft} (hard {hard})");
    }
    ok
}

#[test]
fn thousand_clients_stalled_mid_write_keep_memory_bounded() {
    let _serial = serial();
    const CLIENTS: usize = 1000;
    if !ensure_open_files(2 * CLIENTS as u64 + 200) {
        return;
    }
    let server = server(ServerConfig::default());
    let normal_at = (EXPORT_SIZE - (64 << 10)) as u64;
    normal_client(&server, normal_at, 1);
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib();

    // Each stalled client sends a WRITE header and 32 KiB of payload, then nothing: three
    // in four announce 64 KiB (half sent), one in four announces 1 MiB.
    let half = vec![0x5a; 32 << 10];
    let mut stalled = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut s = go(&server);
        let announced: u32 = if i % 4 == 3 { 1 << 20 } else { 64 << 10 };
        let offset = (i as u64 * 4096) % (EXPORT_SIZE as u64 - (1 << 20));
        s.write_all(&header(Command::Write, offset, announced))
            .unwrap();
        s.write_all(&half).unwrap();
        stalled.push(s);
    }
    // Meanwhile a well-behaved client is served, several times over.
    for round in 0..5 {
        normal_client(&server, normal_at, round);
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = rss_kib();
    let growth = during.saturating_sub(before);
    let sent_kib = (CLIENTS * half.len() / 1024) as u64;
    let announced_kib = (CLIENTS / 4 * 1024 + CLIENTS * 3 / 4 * 64) as u64;
    eprintln!(
        "RSS {before} KiB before, {during} KiB with {CLIENTS} stalled writes \
         (+{growth} KiB; they sent {sent_kib} KiB and announced {announced_kib} KiB)"
    );
    // What the stalled clients sent, plus 24 KiB per connection for everything else
    // (allocator headers, partly filled pages, tasks, buffers), far below what they
    // announced: a server that allocated the announced payload up front grew by ~310 MiB.
    assert!(
        growth < sent_kib + CLIENTS as u64 * 24,
        "RSS grew by {growth} KiB with {CLIENTS} stalled writes ({sent_kib} KiB sent)"
    );
    assert!(
        during < 64 * 1024 + before,
        "RSS {during} KiB (from {before} KiB) with {CLIENTS} stalled writes"
    );
    // Nothing of the stalled writes reached the export (no one else wrote there).
    let mut s = go(&server);
    s.write_all(&header(Command::Read, 4096, 4096)).unwrap();
    assert_eq!(simple_reply(&mut s, 4096), Errno(0));
    let mut back = vec![1; 4096];
    s.read_exact(&mut back).unwrap();
    assert!(
        back.iter().all(|&b| b == 0),
        "a half-sent WRITE was applied"
    );
    drop(stalled);
    normal_client(&server, 0, 9);
}

#[test]
fn stalled_requests_end_their_connection_after_the_request_timeout() {
    let _serial = serial();
    let timeout = Duration::from_millis(800);
    let server = server(ServerConfig {
        request_timeout: timeout,
        ..ServerConfig::default()
    });
    let start = Instant::now();
    // Half a WRITE payload; half a request header.
    let mut mid_payload = go(&server);
    mid_payload
        .write_all(&header(Command::Write, 0, 64 << 10))
        .unwrap();
    mid_payload.write_all(&vec![7; 32 << 10]).unwrap();
    let mut mid_header = go(&server);
    mid_header
        .write_all(&header(Command::Read, 0, 512)[..14])
        .unwrap();
    // Idle between requests: allowed for as long as the client likes.
    let mut idle = go(&server);
    // Slow but steady: a 64 KiB payload in 8 pieces, each within the timeout, the whole
    // taking three times as long as the timeout.
    let mut slow = go(&server);
    let slow_data = vec![3; 64 << 10];
    slow.write_all(&header(Command::Write, 1 << 20, 64 << 10))
        .unwrap();
    for piece in slow_data.chunks(8 << 10) {
        std::thread::sleep(timeout * 3 / 8);
        slow.write_all(piece).unwrap();
    }
    assert_eq!(simple_reply(&mut slow, 1 << 20), Errno(0));

    assert!(
        closed_within(&mut mid_payload, Duration::from_secs(10)),
        "a client stalled mid-payload is closed"
    );
    assert!(
        closed_within(&mut mid_header, Duration::from_secs(10)),
        "a client stalled mid-header is closed"
    );
    assert!(start.elapsed() >= timeout, "closed before the timeout");
    std::thread::sleep(timeout * 2);
    // The idle client, silent for more than three timeouts, is still served.
    assert!(start.elapsed() > timeout * 3);
    idle.write_all(&header(Command::Read, 1 << 20, 4096))
        .unwrap();
    assert_eq!(simple_reply(&mut idle, 1 << 20), Errno(0));
    let mut back = vec![0; 4096];
    idle.read_exact(&mut back).unwrap();
    assert!(back.iter().all(|&b| b == 3), "the slow write landed");
    // The half-sent WRITE was never applied.
    idle.write_all(&header(Command::Read, 0, 4096)).unwrap();
    assert_eq!(simple_reply(&mut idle, 0), Errno(0));
    idle.read_exact(&mut back).unwrap();
    assert!(
        back.iter().all(|&b| b == 0),
        "a half-sent WRITE was applied"
    );
    normal_client(&server, 2 << 20, 5);
}

#[test]
fn shutdown_does_not_wait_for_a_client_stalled_mid_write() {
    let _serial = serial();
    // A request timeout far longer than the test: shutdown must not wait for it.
    let server = server(ServerConfig {
        request_timeout: Duration::from_secs(3600),
        ..ServerConfig::default()
    });
    let mut stalled = go(&server);
    stalled
        .write_all(&header(Command::Write, 0, 64 << 10))
        .unwrap();
    stalled.write_all(&[1; 1000]).unwrap();
    normal_client(&server, 1 << 20, 2);
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    server.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for a stalled client",
        start.elapsed()
    );
    assert!(closed_within(&mut stalled, Duration::from_secs(5)));
}

/// A client that sends READs and never reads the replies: once the socket buffers are
/// full and nothing moves for the request timeout, its connection ends (freeing the
/// replies held for it) and other clients are served meanwhile.
#[test]
fn a_client_that_leaves_its_replies_unread_is_disconnected() {
    let _serial = serial();
    let timeout = Duration::from_millis(800);
    let server = server(ServerConfig {
        request_timeout: timeout,
        ..ServerConfig::default()
    });
    let mut deaf = go(&server);
    const READS: u64 = 40;
    for i in 0..READS {
        deaf.write_all(&header(Command::Read, (i % 8) << 20, 1 << 20))
            .unwrap();
    }
    normal_client(&server, 0, 9);
    std::thread::sleep(timeout * 4);
    // Now read: the replies stop short of the 40 MiB asked for, at the end of stream.
    deaf.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = 0u64;
    let mut chunk = vec![0; 1 << 20];
    loop {
        match deaf.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection was left open ({got} bytes read): {e}"),
        }
    }
    assert!(got < READS << 20, "every reply arrived: {got} bytes");
    normal_client(&server, 1 << 20, 10);
}

/// Many clients that send READs and leave the replies unread: together they hold no
/// more of the server's memory than `max_buffered_bytes` (each alone could hold 64 MiB),
/// and once their connections time out a well-behaved client is served.
#[test]
fn clients_that_leave_replies_unread_hold_at_most_the_memory_budget() {
    let _serial = serial();
    const CLIENTS: usize = 8;
    const READS: u64 = 32;
    let budget = 16 << 20;
    let server = server(ServerConfig {
        max_buffered_bytes: budget,
        request_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    });
    normal_client(&server, 0, 1);
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib();
    let mut deaf = Vec::new();
    for _ in 0..CLIENTS {
        let mut s = go(&server);
        for i in 0..READS {
            s.write_all(&header(Command::Read, (i % 8) << 20, 1 << 20))
                .unwrap();
        }
        deaf.push(s);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let during = rss_kib();
    let growth = during.saturating_sub(before);
    eprintln!(
        "RSS {before} KiB before, {during} KiB with {CLIENTS} clients asking {READS} MiB each \
         and reading nothing (+{growth} KiB)"
    );
    // The budget, the reply-buffer pool (16 MiB) and slack; without the budget the
    // replies held came to ~240 MiB.
    assert!(
        growth < (budget as u64 >> 10) + 16 * 1024 + 8 * 1024,
        "RSS grew by {growth} KiB; the budget is {} KiB",
        budget >> 10
    );
    // The budget is taken: a WRITE waits for it until the deaf connections time out.
    let start = Instant::now();
    normal_client(&server, 1 << 20, 2);
    eprintln!("a normal client was served after {:?}", start.elapsed());
    drop(deaf);
    normal_client(&server, 2 << 20, 3);
}
