//! The running UDP server against hostile and unusual input: path traversal in every
//! form, unknown opcodes, truncated and oversized packets, wrong TIDs, a request flood,
//! the transfer limit; plus IPv6, single-port mode, repeated requests, uploads and 100
//! concurrent downloads.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{pattern, serve, serve_dir};
use tftp::packet::{Mode, Packet, Request};
use tftp::{DirProvider, ErrorCode, Options, ServerConfig, TransferConfig};

/// A blocking test client socket.
fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn rrq(name: &str, options: &[(&str, &str)]) -> Vec<u8> {
    Packet::Rrq(Request {
        filename: name.into(),
        mode: Mode::Octet,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
    .to_vec()
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70000];
    let (n, from) = s.recv_from(&mut buf).expect("an answer from the server");
    buf.truncate(n);
    (buf, from)
}

fn expect_error(s: &UdpSocket) -> ErrorCode {
    let (bytes, _) = recv(s);
    match Packet::parse(&bytes).unwrap() {
        Packet::Error { code, .. } => code,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

/// Root with files, plus a secret beside it and a symlink leading to it.
fn hostile_root() -> (tempfile::TempDir, std::path::PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("ok"), b"fine").unwrap();
    std::fs::write(top.path().join("secret"), b"SECRET").unwrap();
    std::os::unix::fs::symlink(top.path().join("secret"), root.join("escape")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("sub/up")).unwrap();
    (top, root)
}

/// A lockstep download of `ok`, to check the server still serves.
fn try_get(addr: SocketAddr) -> Result<Vec<u8>, tftp::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(tftp::download(
        addr,
        "ok",
        Options::default(),
        &TransferConfig::default(),
    ))
}

fn get_ok(addr: SocketAddr) -> Vec<u8> {
    try_get(addr).unwrap()
}

#[test]
fn path_traversal_in_every_form_is_refused() {
    let (top, root) = hostile_root();
    let server = serve_dir(&root, ServerConfig::default());
    let secret_abs = top.path().join("secret");
    let cases: Vec<(String, ErrorCode)> = vec![
        ("../secret".into(), ErrorCode::AccessViolation),
        ("sub/../../secret".into(), ErrorCode::AccessViolation),
        ("..\\secret".into(), ErrorCode::AccessViolation),
        ("sub\\..\\..\\secret".into(), ErrorCode::AccessViolation),
        ("escape".into(), ErrorCode::AccessViolation),
        ("sub/up/secret".into(), ErrorCode::AccessViolation),
        // Absolute paths name files under the root (like tftpd-hpa --secure).
        (secret_abs.display().to_string(), ErrorCode::FileNotFound),
        ("/etc/passwd".into(), ErrorCode::FileNotFound),
        // TFTP has no percent-encoding: these are literal names that do not exist.
        ("%2e%2e/secret".into(), ErrorCode::FileNotFound),
        ("%2e%2e%2fsecret".into(), ErrorCode::FileNotFound),
        ("..%5csecret".into(), ErrorCode::FileNotFound),
        ("sub".into(), ErrorCode::FileNotFound),
    ];
    let s = client();
    for (name, want) in &cases {
        s.send_to(&rrq(name, &[]), server.addr).unwrap();
        assert_eq!(expect_error(&s), *want, "request for {name:?}");
    }
    // A filename with bytes that are not UTF-8 (junk after a PXE filename).
    s.send_to(b"\x00\x01ok\xff\xff\x00octet\x00", server.addr)
        .unwrap();
    assert_eq!(expect_error(&s), ErrorCode::FileNotFound);
    assert_eq!(get_ok(server.addr), b"fine");
}

#[test]
fn malformed_and_unexpected_packets_get_the_right_error() {
    let (_top, root) = hostile_root();
    let server = serve_dir(&root, ServerConfig::default());
    let s = client();
    let mut oversized_rrq = b"\x00\x01".to_vec();
    oversized_rrq.extend(std::iter::repeat_n(b'a', 1000));
    oversized_rrq.extend(b"\x00octet\x00");
    let mut oversized_datagram = b"\x00\x01".to_vec();
    oversized_datagram.resize(65000, b'x');
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "unknown opcode",
            b"\x00\x09hello".to_vec(),
            ErrorCode::IllegalOperation,
        ),
        (
            "opcode 0",
            b"\x00\x00".to_vec(),
            ErrorCode::IllegalOperation,
        ),
        ("one byte", b"\x01".to_vec(), ErrorCode::IllegalOperation),
        (
            "unterminated",
            b"\x00\x01ok\x00octet".to_vec(),
            ErrorCode::IllegalOperation,
        ),
        (
            "no mode",
            b"\x00\x01ok\x00".to_vec(),
            ErrorCode::IllegalOperation,
        ),
        (
            "option without value",
            rrq("ok", &[("blksize", "512")])[..rrq("ok", &[]).len() + 8].to_vec(),
            ErrorCode::IllegalOperation,
        ),
        ("oversized RRQ", oversized_rrq, ErrorCode::IllegalOperation),
        (
            "oversized datagram",
            oversized_datagram,
            ErrorCode::IllegalOperation,
        ),
        (
            "mail mode",
            b"\x00\x01ok\x00mail\x00".to_vec(),
            ErrorCode::IllegalOperation,
        ),
        (
            "DATA to port 69",
            b"\x00\x03\x00\x01abc".to_vec(),
            ErrorCode::UnknownTid,
        ),
        (
            "ACK to port 69",
            b"\x00\x04\x00\x01".to_vec(),
            ErrorCode::UnknownTid,
        ),
        (
            "WRQ while uploads are off",
            b"\x00\x02up\x00octet\x00".to_vec(),
            ErrorCode::AccessViolation,
        ),
    ];
    for (what, bytes, want) in cases {
        eprintln!("case: {what}");
        s.send_to(&bytes, server.addr).unwrap();
        assert_eq!(expect_error(&s), want, "{what}");
    }
    // An ERROR to port 69 is never answered: the next answer is for the next request.
    s.send_to(b"\x00\x05\x00\x00oops\x00", server.addr).unwrap();
    s.send_to(&rrq("missing", &[]), server.addr).unwrap();
    assert_eq!(expect_error(&s), ErrorCode::FileNotFound);
    // An out-of-range option value gets ERROR 8 (the full cases are in
    // `out_of_range_option_values_get_error_8`).
    s.send_to(
        &rrq(
            "ok",
            &[("blksize", "1"), ("windowsize", "0"), ("timeout", "999")],
        ),
        server.addr,
    )
    .unwrap();
    assert_eq!(expect_error(&s), ErrorCode::OptionRefused);
    assert_eq!(get_ok(server.addr), b"fine");
}

fn expect_error_message(s: &UdpSocket) -> (ErrorCode, String) {
    let (bytes, _) = recv(s);
    match Packet::parse(&bytes).unwrap() {
        Packet::Error { code, message } => (code, message),
        other => panic!("expected ERROR, got {other:?}"),
    }
}

#[test]
fn out_of_range_option_values_get_error_8() {
    let (_top, root) = hostile_root();
    let config = ServerConfig {
        allow_write: true,
        transfer: TransferConfig {
            limits: tftp::Limits {
                max_blksize: 1468,
                ..tftp::Limits::default()
            },
            ..TransferConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = serve_dir(&root, config);
    let s = client();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("blksize", "7")],
            "option blksize: 7 is out of range 8-65464",
        ),
        (
            &[("blksize", "65465")],
            "option blksize: 65465 is out of range 8-65464",
        ),
        (
            &[("windowsize", "0")],
            "option windowsize: 0 is out of range 1-65535",
        ),
        (
            &[("windowsize", "65536")],
            "option windowsize: 65536 is out of range 1-65535",
        ),
        (
            &[("timeout", "0")],
            "option timeout: 0 is out of range 1-255",
        ),
        (
            &[("timeout", "256")],
            "option timeout: 256 is out of range 1-255",
        ),
        (
            &[("tsize", "big")],
            "option tsize: \"big\" is not a number (a size in bytes)",
        ),
        (
            &[("tsize", "0"), ("blksize", "-1432")],
            "option blksize: \"-1432\" is not a number (8-65464)",
        ),
    ];
    for (options, message) in cases {
        s.send_to(&rrq("ok", options), server.addr).unwrap();
        assert_eq!(
            expect_error_message(&s),
            (ErrorCode::OptionRefused, message.to_string()),
            "RRQ with {options:?}"
        );
        // Checked before the file is looked up, and for uploads alike.
        s.send_to(&rrq("missing", options), server.addr).unwrap();
        assert_eq!(expect_error(&s), ErrorCode::OptionRefused, "{options:?}");
        let mut wrq = rrq("upload", options);
        wrq[1] = 2;
        s.send_to(&wrq, server.addr).unwrap();
        assert_eq!(
            expect_error(&s),
            ErrorCode::OptionRefused,
            "WRQ {options:?}"
        );
    }
    assert!(
        !root.join("upload").exists(),
        "a refused upload created a file"
    );
    // Within the RFC's range but above this server's limit: lowered in the OACK.
    s.send_to(
        &rrq("ok", &[("blksize", "65464"), ("tsize", "0")]),
        server.addr,
    )
    .unwrap();
    let (bytes, from) = recv(&s);
    assert_eq!(
        Packet::parse(&bytes).unwrap(),
        Packet::Oack(vec![
            ("blksize".into(), "1468".into()),
            ("tsize".into(), "4".into())
        ])
    );
    s.send_to(&Packet::Ack(0).to_vec(), from).unwrap();
    let (bytes, _) = recv(&s);
    assert_eq!(
        Packet::parse(&bytes).unwrap(),
        Packet::Data {
            block: 1,
            data: b"fine"
        }
    );
    s.send_to(&Packet::Ack(1).to_vec(), from).unwrap();
    assert_eq!(get_ok(server.addr), b"fine");
}

#[test]
fn wrong_tid_gets_error_5_and_the_transfer_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let content = pattern(2000, 5);
    std::fs::write(root.path().join("f"), &content).unwrap();
    let server = serve_dir(root.path(), ServerConfig::default());
    let s = client();
    s.send_to(&rrq("f", &[]), server.addr).unwrap();
    let (first, tid) = recv(&s);
    assert_ne!(tid, server.addr, "a new TID per transfer");
    let intruder = client();
    intruder.send_to(&Packet::Ack(1).to_vec(), tid).unwrap();
    assert_eq!(expect_error(&intruder), ErrorCode::UnknownTid);
    let mut got = Packet::parse(&first)
        .map(|p| match p {
            Packet::Data { data, .. } => data.to_vec(),
            _ => panic!(),
        })
        .unwrap();
    for block in 1..=4u16 {
        s.send_to(&Packet::Ack(block).to_vec(), tid).unwrap();
        if block == 4 {
            break;
        }
        let (bytes, from) = recv(&s);
        assert_eq!(from, tid);
        let Packet::Data { block: b, data } = Packet::parse(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(b, block + 1);
        got.extend_from_slice(data);
    }
    assert_eq!(got, content);
}

/// The busy-poller's bounds: a client slower than its budget (each ACK 2 ms late) and
/// one lost ACK still end in the whole file, the lost block resent after the timeout.
#[test]
fn a_slow_lockstep_client_with_a_lost_ack_gets_the_whole_file() {
    let root = tempfile::tempdir().unwrap();
    let content = pattern(512 * 12 + 100, 9);
    std::fs::write(root.path().join("f"), &content).unwrap();
    let server = serve_dir(root.path(), ServerConfig::default());
    let s = client();
    s.send_to(&rrq("f", &[("timeout", "1")]), server.addr)
        .unwrap();
    let (oack, tid) = recv(&s);
    assert!(matches!(Packet::parse(&oack), Ok(Packet::Oack(_))));
    let mut got = Vec::new();
    let mut ack = 0u16;
    let mut lost_once = false;
    loop {
        std::thread::sleep(Duration::from_millis(2));
        s.send_to(&Packet::Ack(ack).to_vec(), tid).unwrap();
        let (bytes, from) = recv(&s);
        assert_eq!(from, tid);
        let Ok(Packet::Data { block, data }) = Packet::parse(&bytes) else {
            panic!("expected DATA, got {bytes:?}")
        };
        assert_eq!(block, ack + 1);
        let data = data.to_vec();
        if block == 3 && !lost_once {
            // This ACK is "lost": the same block must come again.
            lost_once = true;
            let (again, _) = recv(&s);
            assert_eq!(again, bytes, "block 3 resent unchanged");
        }
        got.extend_from_slice(&data);
        ack = block;
        if data.len() < 512 {
            s.send_to(&Packet::Ack(ack).to_vec(), tid).unwrap();
            break;
        }
    }
    assert!(lost_once);
    assert_eq!(got, content);
}

#[test]
fn a_repeated_request_does_not_start_a_second_stream() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), b"x").unwrap();
    let server = serve_dir(root.path(), ServerConfig::default());
    let s = client();
    s.send_to(&rrq("f", &[]), server.addr).unwrap();
    s.send_to(&rrq("f", &[]), server.addr).unwrap();
    let (_, tid) = recv(&s);
    s.send_to(&Packet::Ack(1).to_vec(), tid).unwrap();
    // A second stream would send its own DATA 1 from another port right away.
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 600];
    if let Ok((_, from)) = s.recv_from(&mut buf) {
        panic!("unexpected second answer from {from}");
    }
}

#[test]
fn the_number_of_transfers_is_bounded() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), pattern(5000, 1)).unwrap();
    let config = ServerConfig {
        max_transfers: 2,
        ..ServerConfig::default()
    };
    let server = serve_dir(root.path(), config);
    let (a, b, c) = (client(), client(), client());
    for s in [&a, &b] {
        s.send_to(&rrq("f", &[]), server.addr).unwrap();
        let (bytes, _) = recv(s);
        assert!(matches!(
            Packet::parse(&bytes).unwrap(),
            Packet::Data { block: 1, .. }
        ));
    }
    c.send_to(&rrq("f", &[]), server.addr).unwrap();
    assert_eq!(expect_error(&c), ErrorCode::NotDefined, "server busy");
}

#[test]
fn the_number_of_transfers_per_client_is_bounded() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), pattern(5000, 1)).unwrap();
    let config = ServerConfig {
        max_transfers_per_client: 2,
        ..ServerConfig::default()
    };
    let server = serve_dir(root.path(), config);
    let (a, b, c) = (client(), client(), client());
    let mut tids = Vec::new();
    for s in [&a, &b] {
        s.send_to(&rrq("f", &[]), server.addr).unwrap();
        let (bytes, tid) = recv(s);
        assert!(matches!(
            Packet::parse(&bytes).unwrap(),
            Packet::Data { block: 1, .. }
        ));
        tids.push(tid);
    }
    c.send_to(&rrq("f", &[]), server.addr).unwrap();
    let (bytes, _) = recv(&c);
    assert_eq!(
        Packet::parse(&bytes).unwrap(),
        Packet::Error {
            code: ErrorCode::NotDefined,
            message: "Too many transfers from this client".into()
        }
    );
    // Client a gives up: its transfer ends and its slot is free again.
    let bye = Packet::Error {
        code: ErrorCode::NotDefined,
        message: "bye".into(),
    }
    .to_vec();
    a.send_to(&bye, tids[0]).unwrap();
    let start = std::time::Instant::now();
    loop {
        c.send_to(&rrq("f", &[]), server.addr).unwrap();
        let (bytes, _) = recv(&c);
        if matches!(
            Packet::parse(&bytes).unwrap(),
            Packet::Data { block: 1, .. }
        ) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no slot freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_request_flood_leaves_the_server_serving() {
    let (_top, root) = hostile_root();
    let config = ServerConfig {
        max_transfers: 64,
        transfer: TransferConfig {
            max_retries: 1,
            timeout: Duration::from_millis(200),
            ..TransferConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = serve_dir(&root, config);
    let flooders: Vec<UdpSocket> = (0..50).map(|_| client()).collect();
    for round in 0..40 {
        for (i, s) in flooders.iter().enumerate() {
            let name = match (round + i) % 4 {
                0 => "ok",
                1 => "../secret",
                2 => "missing",
                _ => "escape",
            };
            let _ = s.send_to(&rrq(name, &[]), server.addr);
        }
    }
    let junk = client();
    for _ in 0..200 {
        let _ = junk.send_to(b"\x00\x09junk", server.addr);
    }
    // Whatever was dropped under load, the server serves a normal client once the
    // flood's transfers time out (until then it may only say it is busy), and it never
    // sent the secret to anyone.
    let start = std::time::Instant::now();
    let served = loop {
        match try_get(server.addr) {
            Ok(bytes) => break bytes,
            Err(tftp::Error::Peer { code, message }) if message.contains("busy") => {
                assert_eq!(code, ErrorCode::NotDefined);
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "still busy after 5 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("after the flood: {e}"),
        }
    };
    assert_eq!(served, b"fine");
    for s in &flooders {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 600];
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            assert!(!buf[..n].windows(6).any(|w| w == b"SECRET"));
        }
    }
}

fn serve_files(root: &Path) -> Vec<u8> {
    let content = pattern(300_000, 11);
    std::fs::write(root.join("f"), &content).unwrap();
    content
}

#[test]
fn ipv6_loopback() {
    let root = tempfile::tempdir().unwrap();
    let content = serve_files(root.path());
    let provider = DirProvider::new(root.path()).unwrap();
    let Ok(probe) = UdpSocket::bind("[::1]:0") else {
        eprintln!("SKIPPED: no IPv6 loopback");
        return;
    };
    drop(probe);
    let server = serve(
        provider,
        ServerConfig::default(),
        "[::1]:0".parse().unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = Options {
        blksize: Some(1400),
        windowsize: Some(8),
        tsize: Some(0),
        ..Options::default()
    };
    let got = rt
        .block_on(tftp::download(
            server.addr,
            "f",
            options,
            &TransferConfig::default(),
        ))
        .unwrap();
    assert!(got == content);
    if let Some(curl) = testkit::peer("curl") {
        let out = root.path().join("out");
        testkit::run(
            std::process::Command::new(curl)
                .arg("-sS")
                .arg(format!("tftp://[::1]:{}/f", server.addr.port()))
                .arg("-o")
                .arg(&out),
        );
        assert!(std::fs::read(out).unwrap() == content);
    }
}

#[test]
fn single_port_mode_serves_from_the_listening_port() {
    let root = tempfile::tempdir().unwrap();
    let content = serve_files(root.path());
    let server = serve_dir(
        root.path(),
        ServerConfig {
            single_port: true,
            ..ServerConfig::default()
        },
    );
    let s = client();
    s.send_to(&rrq("f", &[]), server.addr).unwrap();
    let (_, from) = recv(&s);
    assert_eq!(from, server.addr);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = Options {
        blksize: Some(1468),
        windowsize: Some(4),
        ..Options::default()
    };
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let addr = server.addr;
            tasks.push(tokio::spawn(async move {
                tftp::download(addr, "f", options, &TransferConfig::default()).await
            }));
        }
        let mut v = Vec::new();
        for t in tasks {
            v.push(t.await.unwrap());
        }
        v
    });
    for r in results {
        assert!(r.unwrap() == content);
    }
    if let Some(curl) = testkit::peer("curl") {
        let out = root.path().join("out");
        testkit::run(
            std::process::Command::new(curl)
                .arg("-sS")
                .arg(format!("tftp://127.0.0.1:{}/f", server.addr.port()))
                .arg("-o")
                .arg(&out),
        );
        assert!(std::fs::read(out).unwrap() == content);
    }
}

#[test]
fn hundred_concurrent_downloads_of_10_mib() {
    let root = tempfile::tempdir().unwrap();
    let content = pattern(10 << 20, 21);
    std::fs::write(root.path().join("big"), &content).unwrap();
    let server = serve_dir(root.path(), ServerConfig::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = Options {
        blksize: Some(8192),
        windowsize: Some(8),
        tsize: Some(0),
        ..Options::default()
    };
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let addr = server.addr;
                tokio::spawn(async move {
                    tftp::download(addr, "big", options, &TransferConfig::default()).await
                })
            })
            .collect();
        let mut v = Vec::new();
        for t in tasks {
            v.push(t.await.unwrap());
        }
        v
    });
    assert_eq!(results.len(), 100);
    for (i, r) in results.into_iter().enumerate() {
        let got = r.unwrap_or_else(|e| panic!("download {i}: {e}"));
        assert!(got == content, "download {i} differs ({} bytes)", got.len());
    }
}

/// A provider whose file panics on its first read (a bug in a provider, hit while a
/// transfer makes its first DATA packet); later reads work.
#[derive(Debug, Default)]
struct PanicsOnce(Arc<AtomicBool>);

impl tftp::Source for PanicsOnce {
    fn len(&self) -> u64 {
        100
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        assert!(self.0.swap(true, Ordering::Relaxed), "a bug in the source");
        let n = buf.len().min(100usize.saturating_sub(offset as usize));
        buf[..n].fill(b'x');
        Ok(n)
    }
}

impl tftp::Provider for PanicsOnce {
    fn open(&self, _: &str, _: SocketAddr) -> Result<Arc<dyn tftp::Source>, tftp::Error> {
        Ok(Arc::new(PanicsOnce(self.0.clone())))
    }
}

/// A panic in one transfer ends that transfer with ERROR 0, is counted, and frees its
/// route: the client's repeated request (same port, same file) starts a new transfer.
/// It used to kill the transfer's task silently and leave its route behind, so the
/// repeated request was handed to a transfer that no longer ran: never answered.
#[test]
fn a_panic_in_a_transfer_ends_it_with_an_error_and_the_client_can_retry() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = runtime
        .block_on(tftp::Server::bind(
            bind,
            PanicsOnce::default(),
            ServerConfig::default(),
        ))
        .unwrap();
    let (addr, panics) = (server.local_addr().unwrap(), server.panics());
    runtime.spawn(server.run());

    let s = client();
    s.send_to(&rrq("f", &[]), addr).unwrap();
    let (bytes, _) = recv(&s);
    match Packet::parse(&bytes).unwrap() {
        Packet::Error { code, message } => {
            assert_eq!(
                (code, message.as_str()),
                (ErrorCode::NotDefined, "Internal error")
            )
        }
        other => panic!("expected ERROR 0, got {other:?}"),
    }
    assert_eq!(panics.load(Ordering::Relaxed), 1);

    // The client retries after its timeout (the ended transfer's task needs a moment
    // to give back its route; a request in that moment is taken as a repeat).
    std::thread::sleep(Duration::from_millis(300));
    s.send_to(&rrq("f", &[]), addr).unwrap();
    let (bytes, from) = recv(&s);
    match Packet::parse(&bytes).unwrap() {
        Packet::Data { block: 1, data } => assert_eq!(data, [b'x'; 100]),
        other => panic!("expected DATA 1, got {other:?}"),
    }
    s.send_to(&Packet::Ack(1).to_vec(), from).unwrap();
    assert_eq!(panics.load(Ordering::Relaxed), 1);
    runtime.shutdown_background();
}
