//! Scripted read and write transfers in virtual time: loss, duplication and reordering
//! of DATA and ACK, timeouts, retry exhaustion, windowsize recovery, OACK refusal,
//! option values out of range (ERROR 8) or lowered, block-number roll-over, and the real PXE clients'
//! control packets from `../shared/fixtures/pcap` (EDK2 size probe, iPXE).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tftp::packet::{Mode, Packet, Request};
use tftp::provider::{MemorySource, Sink};
use tftp::transfer::{ClientRead, Outcome, ReadTransfer, TransferConfig, WriteTransfer};
use tftp::{Error, ErrorCode};

fn request(options: &[(&str, &str)]) -> Request {
    Request {
        filename: "f".into(),
        mode: Mode::Octet,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A read transfer plus a virtual clock and helpers to see what it sends.
struct Harness {
    t: ReadTransfer,
    now: Instant,
    buf: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Data(u16, usize),
    Oack(Vec<(String, String)>),
    Error(ErrorCode),
}

impl Harness {
    fn new(req: &Request, data: Vec<u8>) -> Self {
        Self::with_config(req, data, TransferConfig::default())
    }

    fn with_config(req: &Request, data: Vec<u8>, config: TransferConfig) -> Self {
        let now = Instant::now();
        let t = ReadTransfer::new(now, req, Arc::new(MemorySource::from(data)), &config).unwrap();
        Self {
            t,
            now,
            buf: vec![0; 70000],
        }
    }

    fn sent(&mut self) -> Vec<Sent> {
        let mut v = Vec::new();
        while let Some(n) = self.t.poll_transmit(&mut self.buf) {
            v.push(match Packet::parse(&self.buf[..n]).unwrap() {
                Packet::Data { block, data } => Sent::Data(block, data.len()),
                Packet::Oack(o) => Sent::Oack(o),
                Packet::Error { code, .. } => Sent::Error(code),
                other => panic!("server sent {other:?}"),
            });
            assert!(v.len() < 100_000, "runaway transmit");
        }
        v
    }

    fn ack(&mut self, block: u16) {
        self.t
            .handle_datagram(self.now, &Packet::Ack(block).to_vec());
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.t.handle_datagram(self.now, bytes);
    }

    /// Advances the clock to the next deadline and fires it.
    fn expire(&mut self) {
        let d = self.t.poll_timeout().expect("a deadline");
        assert!(d > self.now, "deadline in the past");
        self.now = d;
        self.t.handle_timeout(self.now);
    }

    fn completed(&self) -> bool {
        matches!(self.t.outcome(), Some(Outcome::Completed))
    }
}

fn blocks(range: std::ops::RangeInclusive<u16>, len: usize) -> Vec<Sent> {
    range.map(|b| Sent::Data(b, len)).collect()
}

#[test]
fn plain_rfc1350_lockstep_with_short_last_block() {
    let mut h = Harness::new(&request(&[]), file(1030));
    assert_eq!(h.sent(), [Sent::Data(1, 512)]);
    h.ack(1);
    assert_eq!(h.sent(), [Sent::Data(2, 512)]);
    h.ack(2);
    assert_eq!(h.sent(), [Sent::Data(3, 6)]);
    assert!(!h.completed());
    h.ack(3);
    assert!(h.completed());
    assert_eq!(h.t.poll_timeout(), None);
}

#[test]
fn exact_multiple_ends_with_an_empty_block() {
    let mut h = Harness::new(&request(&[]), file(1024));
    h.sent();
    h.ack(1);
    h.sent();
    h.ack(2);
    assert_eq!(h.sent(), [Sent::Data(3, 0)]);
    h.ack(3);
    assert!(h.completed());
}

#[test]
fn empty_file_is_one_empty_block() {
    let mut h = Harness::new(&request(&[]), Vec::new());
    assert_eq!(h.sent(), [Sent::Data(1, 0)]);
    h.ack(1);
    assert!(h.completed());
}

#[test]
fn lost_data_is_resent_on_timeout_only() {
    let mut h = Harness::new(&request(&[]), file(2000));
    assert_eq!(h.sent(), [Sent::Data(1, 512)]);
    let first = h.t.poll_timeout().unwrap();
    h.expire(); // DATA 1 (or its ACK) was lost
    assert_eq!(h.sent(), [Sent::Data(1, 512)]);
    // Exponential backoff (RFC 1123 4.2.3.2): the second wait is twice the first.
    let second = h.t.poll_timeout().unwrap();
    assert_eq!(second - h.now, Duration::from_secs(2));
    let _ = first;
    h.ack(1);
    assert_eq!(h.sent(), [Sent::Data(2, 512)]);
}

#[test]
fn duplicate_ack_never_triggers_data_sorcerers_apprentice() {
    let mut h = Harness::new(&request(&[]), file(2000));
    h.sent();
    h.ack(1);
    assert_eq!(h.sent(), [Sent::Data(2, 512)]);
    h.ack(1); // duplicate, e.g. the client retransmitted its ACK
    h.ack(1);
    assert_eq!(h.sent(), [], "RFC 1123 4.2.3.1: no DATA on a duplicate ACK");
    h.ack(2);
    assert_eq!(h.sent(), [Sent::Data(3, 512)]);
}

#[test]
fn reordered_and_stale_acks_are_ignored() {
    let mut h = Harness::new(&request(&[("windowsize", "4")]), file(512 * 10));
    h.sent();
    h.ack(0);
    assert_eq!(h.sent(), blocks(1..=4, 512));
    h.ack(4);
    assert_eq!(h.sent(), blocks(5..=8, 512));
    h.ack(2); // a late ACK from before: stale
    h.ack(3);
    assert_eq!(h.sent(), []);
    h.ack(9); // never sent: bogus
    assert_eq!(h.sent(), []);
    h.ack(8);
    assert_eq!(
        h.sent(),
        [Sent::Data(9, 512), Sent::Data(10, 512), Sent::Data(11, 0)]
    );
    h.ack(11);
    assert!(h.completed());
}

#[test]
fn window_recovers_from_a_lost_block() {
    let mut h = Harness::new(
        &request(&[("windowsize", "4"), ("blksize", "100")]),
        file(1000),
    );
    assert_eq!(
        h.sent(),
        [Sent::Oack(vec![
            ("blksize".into(), "100".into()),
            ("windowsize".into(), "4".into())
        ])]
    );
    h.ack(0);
    assert_eq!(h.sent(), blocks(1..=4, 100));
    // Block 3 lost: the client ACKs 2, the last block it holds in order (RFC 7440 §4).
    h.ack(2);
    assert_eq!(h.sent(), blocks(3..=6, 100));
    h.ack(6);
    assert_eq!(
        h.sent(),
        [
            Sent::Data(7, 100),
            Sent::Data(8, 100),
            Sent::Data(9, 100),
            Sent::Data(10, 100)
        ]
    );
    // The whole window's ACK is lost: timeout resends the window from 7.
    h.expire();
    assert_eq!(h.sent(), blocks(7..=10, 100));
    h.ack(10);
    assert_eq!(h.sent(), [Sent::Data(11, 0)]);
    h.ack(11);
    assert!(h.completed());
    let (sent, again) = h.t.stats();
    assert_eq!((sent, again), (17, 6));
}

#[test]
fn duplicated_window_ack_does_not_resend() {
    let mut h = Harness::new(&request(&[("windowsize", "2")]), file(512 * 5));
    h.sent();
    h.ack(0);
    h.ack(0); // duplicated ACK 0
    assert_eq!(h.sent(), blocks(1..=2, 512));
    h.ack(2);
    h.ack(2);
    assert_eq!(h.sent(), blocks(3..=4, 512));
}

#[test]
fn retries_are_bounded() {
    let config = TransferConfig {
        max_retries: 3,
        ..TransferConfig::default()
    };
    let mut h = Harness::with_config(&request(&[]), file(100), config);
    assert_eq!(h.sent().len(), 1);
    for _ in 0..3 {
        h.expire();
        assert_eq!(h.sent(), [Sent::Data(1, 100)]);
    }
    h.expire();
    assert_eq!(
        h.sent(),
        [],
        "no ERROR is sent to a silent peer (amplification)"
    );
    assert!(matches!(
        h.t.outcome(),
        Some(Outcome::Failed(Error::TimedOut { retries: 3 }))
    ));
    assert_eq!(h.t.poll_timeout(), None);
}

#[test]
fn an_unacknowledged_first_answer_is_resent_only_three_times() {
    // A spoofed RRQ: the "client" never answers. 1 + 3 DATA packets, then silence.
    let mut h = Harness::new(&request(&[]), file(5000));
    let mut sent = h.sent().len();
    while h.t.poll_timeout().is_some() {
        h.expire();
        sent += h.sent().len();
    }
    assert_eq!(sent, 4);
    assert!(matches!(
        h.t.outcome(),
        Some(Outcome::Failed(Error::TimedOut { retries: 3 }))
    ));
    // Once the client has acknowledged a block, the full retry budget (8) applies.
    let mut h = Harness::new(&request(&[]), file(5000));
    h.sent();
    h.ack(1);
    let mut sent = h.sent().len();
    while h.t.poll_timeout().is_some() {
        h.expire();
        sent += h.sent().len();
    }
    assert_eq!(sent, 9);
}

#[test]
fn negotiated_timeout_is_used_without_backoff() {
    let mut h = Harness::new(&request(&[("timeout", "3")]), file(100));
    assert_eq!(h.sent(), [Sent::Oack(vec![("timeout".into(), "3".into())])]);
    h.ack(0);
    h.sent();
    for _ in 0..3 {
        let before = h.now;
        h.expire();
        assert_eq!(h.now - before, Duration::from_secs(3));
        h.sent();
    }
}

#[test]
fn oack_is_resent_when_lost_and_refusal_ends_quietly() {
    let mut h = Harness::new(&request(&[("blksize", "1468"), ("tsize", "0")]), file(5000));
    let oack = Sent::Oack(vec![
        ("blksize".into(), "1468".into()),
        ("tsize".into(), "5000".into()),
    ]);
    assert_eq!(h.sent(), [oack]);
    h.expire();
    assert_eq!(h.sent().len(), 1, "OACK resent");
    h.ack(1); // nonsense before ACK 0: ignored
    assert_eq!(h.sent(), []);
    h.raw(
        &Packet::Error {
            code: ErrorCode::OptionRefused,
            message: "no".into(),
        }
        .to_vec(),
    );
    assert!(matches!(h.t.outcome(), Some(Outcome::Declined)));
    assert_eq!(h.sent(), []);
}

#[test]
fn oack_answered_with_another_error_fails() {
    let mut h = Harness::new(&request(&[("blksize", "1468")]), file(5000));
    h.sent();
    h.raw(
        &Packet::Error {
            code: ErrorCode::IllegalOperation,
            message: "what?".into(),
        }
        .to_vec(),
    );
    assert!(matches!(
        h.t.outcome(),
        Some(Outcome::Failed(Error::Peer {
            code: ErrorCode::IllegalOperation,
            ..
        }))
    ));
    assert_eq!(h.sent(), [], "never answer an ERROR");
}

#[test]
fn client_ignoring_the_oack_gets_plain_rfc1350() {
    let req = request(&[("blksize", "1468")]);
    let mut h = Harness::new(&req, file(1000));
    assert_eq!(h.sent().len(), 1);
    let rrq = Packet::Rrq(req.clone()).to_vec();
    // The client retransmits on its timer (1 s here).
    h.now += Duration::from_secs(1);
    h.raw(&rrq); // first repeat: maybe our OACK was lost
    assert!(matches!(h.sent()[..], [Sent::Oack(_)]));
    h.now += Duration::from_secs(1);
    h.raw(&rrq); // second: the client does not understand OACK
    assert_eq!(h.sent(), [Sent::Data(1, 512)]);
    h.ack(1);
    assert_eq!(h.sent(), [Sent::Data(2, 488)]);
    h.ack(2);
    assert!(h.completed());
}

/// Copies of the request the network duplicated or delayed arrive close together: they
/// are not a client ignoring the OACK, and the options stay (dropping them after the
/// client accepted the OACK would make it take a 512-byte DATA 1 for its last block).
#[test]
fn duplicated_requests_do_not_drop_the_options() {
    let req = request(&[("blksize", "1468")]);
    let mut h = Harness::new(&req, file(1000));
    assert_eq!(h.sent().len(), 1);
    let rrq = Packet::Rrq(req.clone()).to_vec();
    for _ in 0..3 {
        h.now += Duration::from_millis(20);
        h.raw(&rrq);
        assert_eq!(h.sent(), [], "a copy of the request changes nothing");
    }
    h.ack(0);
    assert_eq!(h.sent(), [Sent::Data(1, 1000)]);
    h.ack(1);
    assert!(h.completed());
}

/// What a read or a write transfer answers to a request with `options`: the refusal's
/// code and message, or `None` when it starts.
fn refusal(options: &[(&str, &str)]) -> Option<(ErrorCode, String)> {
    let req = request(options);
    let now = Instant::now();
    let config = TransferConfig::default();
    let read = ReadTransfer::new(now, &req, Arc::new(MemorySource::from(file(10))), &config);
    let write = WriteTransfer::new(now, &req, Box::new(MemSink::default()), &config);
    let (read, write) = (
        read.err().map(|e| e.to_wire()),
        write.err().map(|e| e.to_wire()),
    );
    assert_eq!(read, write, "reads and writes refuse alike: {options:?}");
    read
}

#[test]
fn option_values_out_of_range_are_refused_with_error_8() {
    // RFC 2348 (blksize 8-65464), RFC 2349 (timeout 1-255, tsize a number), RFC 7440
    // (windowsize 1-65535): ERROR 8 naming the option, the value and the range.
    for (options, message) in [
        (
            &[("blksize", "4")][..],
            "option blksize: 4 is out of range 8-65464",
        ),
        (
            &[("blksize", "7")],
            "option blksize: 7 is out of range 8-65464",
        ),
        (
            &[("blksize", "65465")],
            "option blksize: 65465 is out of range 8-65464",
        ),
        (
            &[("blksize", "99999999999999999999999")],
            "option blksize: 99999999999999999999999 is out of range 8-65464",
        ),
        (
            &[("windowsize", "0")],
            "option windowsize: 0 is out of range 1-65535",
        ),
        (
            &[("windowsize", "100000")],
            "option windowsize: 100000 is out of range 1-65535",
        ),
        (
            &[("timeout", "0")],
            "option timeout: 0 is out of range 1-255",
        ),
        (
            &[("timeout", "999")],
            "option timeout: 999 is out of range 1-255",
        ),
        (
            &[("tsize", "-5")],
            "option tsize: \"-5\" is not a number (a size in bytes)",
        ),
        (
            &[("tsize", "lots")],
            "option tsize: \"lots\" is not a number (a size in bytes)",
        ),
        (
            &[("blksize", "abc")],
            "option blksize: \"abc\" is not a number (8-65464)",
        ),
        // One bad value among good ones refuses the request; names ignore case.
        (
            &[("blksize", "1468"), ("tsize", "0"), ("WindowSize", "0")],
            "option windowsize: 0 is out of range 1-65535",
        ),
    ] {
        assert_eq!(
            refusal(options),
            Some((ErrorCode::OptionRefused, message.to_owned())),
            "{options:?}"
        );
    }
    // Unknown options are still ignored (RFC 2347), whatever their value.
    assert_eq!(refusal(&[("multicast", ""), ("utimeout", "-1")]), None);
    let mut h = Harness::new(&request(&[("multicast", ""), ("rollover", "x")]), file(10));
    assert_eq!(h.sent(), [Sent::Data(1, 10)]);
}

#[test]
fn a_refused_request_ends_our_client_with_the_servers_error_8() {
    // The whole exchange in virtual time: our client asks with a blksize below 8, the
    // server refuses, the client ends with the server's code and message and sends
    // nothing more; asking again within range is served.
    let mut now = Instant::now();
    let config = TransferConfig::default();
    let asked = tftp::Options {
        blksize: Some(4),
        tsize: Some(0),
        ..tftp::Options::default()
    };
    let mut client = ClientRead::new(now, "f", asked, &config);
    let mut buf = vec![0u8; 70000];
    let n = client.poll_transmit(&mut buf).unwrap();
    let Packet::Rrq(req) = Packet::parse(&buf[..n]).unwrap() else {
        panic!("the client sends an RRQ")
    };
    let err =
        ReadTransfer::new(now, &req, Arc::new(MemorySource::from(file(10))), &config).unwrap_err();
    let (code, message) = err.to_wire();
    assert_eq!(code, ErrorCode::OptionRefused);
    now += Duration::from_millis(3);
    client.handle_datagram(now, &Packet::Error { code, message }.to_vec());
    match client.outcome() {
        Some(Outcome::Failed(Error::Peer { code, message })) => {
            assert_eq!(*code, ErrorCode::OptionRefused);
            assert_eq!(message, "option blksize: 4 is out of range 8-65464");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.poll_transmit(&mut buf), None);
    assert_eq!(
        client.poll_timeout(),
        None,
        "no retransmission after a refusal"
    );

    let asked = tftp::Options {
        blksize: Some(8),
        ..asked
    };
    let mut client = ClientRead::new(now, "f", asked, &config);
    let n = client.poll_transmit(&mut buf).unwrap();
    let Packet::Rrq(req) = Packet::parse(&buf[..n]).unwrap() else {
        panic!()
    };
    let mut h = Harness::new(&req, file(10));
    assert_eq!(
        h.sent(),
        [Sent::Oack(vec![
            ("blksize".into(), "8".into()),
            ("tsize".into(), "10".into())
        ])]
    );
}

#[test]
fn values_inside_the_rfc_range_are_lowered_not_refused() {
    // Too large for this server but within the RFCs: lowered to the server's limit,
    // never raised (negotiation, RFC 2348 and RFC 7440).
    let config = TransferConfig {
        limits: tftp::Limits {
            max_blksize: 1468,
            max_windowsize: 8,
            ..tftp::Limits::default()
        },
        ..TransferConfig::default()
    };
    let mut h = Harness::with_config(
        &request(&[
            ("blksize", "65464"),
            ("windowsize", "65535"),
            ("timeout", "255"),
        ]),
        file(3000),
        config,
    );
    assert_eq!(
        h.sent(),
        [Sent::Oack(vec![
            ("blksize".into(), "1468".into()),
            ("timeout".into(), "255".into()),
            ("windowsize".into(), "8".into())
        ])]
    );
    assert_eq!((h.t.blksize(), h.t.windowsize()), (1468, 8));
    // The transfer then runs at the lowered values, its clock the negotiated timeout.
    h.ack(0);
    assert_eq!(
        h.sent(),
        [Sent::Data(1, 1468), Sent::Data(2, 1468), Sent::Data(3, 64)]
    );
    assert_eq!(
        h.t.poll_timeout().unwrap() - h.now,
        Duration::from_secs(255)
    );
    h.ack(3);
    assert!(h.completed());
    // The RFCs' own bounds are accepted as they are.
    let mut h = Harness::new(
        &request(&[("blksize", "8"), ("timeout", "1"), ("windowsize", "1")]),
        file(20),
    );
    assert_eq!(
        h.sent(),
        [Sent::Oack(vec![
            ("blksize".into(), "8".into()),
            ("timeout".into(), "1".into()),
            ("windowsize".into(), "1".into())
        ])]
    );
}

#[test]
fn block_numbers_roll_over_to_zero() {
    let blk = 8usize;
    let data = file(blk * 65540 + 3);
    let mut h = Harness::new(&request(&[("blksize", "8")]), data);
    h.sent();
    h.ack(0);
    let mut wire = 0u16;
    let mut count = 0u64;
    loop {
        let s = h.sent();
        let [Sent::Data(b, len)] = s[..] else {
            panic!("{s:?}")
        };
        wire = wire.wrapping_add(1);
        assert_eq!(b, wire);
        count += 1;
        h.ack(b);
        if len < blk {
            break;
        }
    }
    assert_eq!(count, 65541);
    assert!(h.completed());
}

#[test]
fn unexpected_packets_end_with_illegal_operation() {
    let mut h = Harness::new(&request(&[]), file(1000));
    h.sent();
    h.raw(&[0, 9, 1, 2]);
    assert_eq!(h.sent(), [Sent::Error(ErrorCode::IllegalOperation)]);
    assert!(matches!(h.t.outcome(), Some(Outcome::Failed(_))));
    let mut h = Harness::new(&request(&[]), file(1000));
    h.sent();
    h.raw(&[0, 4, 1]); // truncated ACK
    assert_eq!(h.sent(), [Sent::Error(ErrorCode::IllegalOperation)]);
}

#[test]
fn netascii_and_unknown_modes() {
    let req = Request {
        filename: "f".into(),
        mode: Mode::Netascii,
        options: vec![("tsize".into(), "0".into())],
    };
    let mut h = Harness::new(&req, b"a\nb\rc".to_vec());
    // tsize is unknown for netascii: no OACK, the converted text is sent.
    let n = h.t.poll_transmit(&mut h.buf).unwrap();
    assert_eq!(
        Packet::parse(&h.buf[..n]).unwrap(),
        Packet::Data {
            block: 1,
            data: b"a\r\nb\r\0c"
        }
    );
    for mode in [Mode::Mail, Mode::Unknown("binary".into())] {
        let req = Request {
            filename: "f".into(),
            mode,
            options: vec![],
        };
        let e = ReadTransfer::new(
            Instant::now(),
            &req,
            Arc::new(MemorySource::from(vec![])),
            &TransferConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.to_wire().0, ErrorCode::IllegalOperation);
    }
}

/// Packets captured from EDK2 (OVMF) PXE against dnsmasq: the size probe with tsize is
/// aborted with ERROR 8, then the download asks for blksize and windowsize.
#[test]
fn edk2_size_probe_then_download() {
    let probe =
        b"\x00\x01snponly.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00";
    let Packet::Rrq(req) = Packet::parse(probe).unwrap() else {
        panic!()
    };
    let mut h = Harness::new(&req, file(173_792));
    let [Sent::Oack(o)] = &h.sent()[..] else {
        panic!()
    };
    assert!(o.contains(&("tsize".into(), "173792".into())));
    h.raw(b"\x00\x05\x00\x08User aborted the transfer\x00");
    assert!(matches!(h.t.outcome(), Some(Outcome::Declined)));

    let download = b"\x00\x01snponly.efi\x00octet\x00blksize\x001468\x00windowsize\x004\x00";
    let Packet::Rrq(req) = Packet::parse(download).unwrap() else {
        panic!()
    };
    let mut h = Harness::new(&req, file(173_792));
    let [Sent::Oack(o)] = &h.sent()[..] else {
        panic!()
    };
    assert_eq!(
        o,
        &[
            ("blksize".to_string(), "1468".to_string()),
            ("windowsize".into(), "4".into())
        ]
    );
    h.raw(b"\x00\x04\x00\x00");
    let mut total = 0;
    loop {
        let s = h.sent();
        assert!(s.len() <= 4);
        let Some(Sent::Data(last, _)) = s.last() else {
            panic!("{s:?}")
        };
        total += s
            .iter()
            .map(|x| if let Sent::Data(_, n) = x { *n } else { 0 })
            .sum::<usize>();
        h.ack(*last);
        if h.completed() {
            break;
        }
    }
    assert_eq!(total, 173_792);
}

/// iPXE's request as captured: the OACK matches dnsmasq's byte for byte.
#[test]
fn ipxe_request_gets_the_same_oack_as_dnsmasq() {
    let rrq = b"\x00\x01boot.ipxe\x00octet\x00blksize\x001432\x00tsize\x000\x00";
    let Packet::Rrq(req) = Packet::parse(rrq).unwrap() else {
        panic!()
    };
    let mut h = Harness::new(&req, file(63));
    let n = h.t.poll_transmit(&mut h.buf).unwrap();
    assert_eq!(&h.buf[..n], b"\x00\x06blksize\x001432\x00tsize\x0063\x00");
    h.raw(b"\x00\x04\x00\x00");
    assert_eq!(h.sent(), [Sent::Data(1, 63)]);
    h.raw(b"\x00\x04\x00\x01");
    assert!(h.completed());
}

// ----- write transfers -----

#[derive(Debug, Default, Clone)]
struct MemSink {
    data: Arc<std::sync::Mutex<Vec<u8>>>,
    committed: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink for MemSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut v = self.data.lock().unwrap();
        let end = offset as usize + data.len();
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn commit(self: Box<Self>) -> std::io::Result<()> {
        self.committed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

fn acks(t: &mut WriteTransfer) -> Vec<Packet<'static>> {
    let mut buf = vec![0u8; 1024];
    let mut v = Vec::new();
    while let Some(n) = t.poll_transmit(&mut buf) {
        v.push(match Packet::parse(&buf[..n]).unwrap() {
            Packet::Ack(b) => Packet::Ack(b),
            Packet::Oack(o) => Packet::Oack(o),
            Packet::Error { code, message } => Packet::Error { code, message },
            other => panic!("{other:?}"),
        });
    }
    v
}

fn data(block: u16, bytes: &[u8]) -> Vec<u8> {
    Packet::Data { block, data: bytes }.to_vec()
}

#[test]
fn write_lockstep_duplicate_and_commit() {
    let sink = MemSink::default();
    let now = Instant::now();
    let mut t = WriteTransfer::new(
        now,
        &request(&[]),
        Box::new(sink.clone()),
        &TransferConfig::default(),
    )
    .unwrap();
    assert_eq!(acks(&mut t), [Packet::Ack(0)]);
    let content = file(1100);
    t.handle_datagram(now, &data(1, &content[..512]));
    assert_eq!(acks(&mut t), [Packet::Ack(1)]);
    t.handle_datagram(now, &data(1, &content[..512])); // duplicate: our ACK was lost
    assert_eq!(acks(&mut t), [Packet::Ack(1)]);
    t.handle_datagram(now, &data(3, &content[..10])); // out of order
    assert_eq!(acks(&mut t), [Packet::Ack(1)]);
    t.handle_datagram(now, &data(2, &content[512..1024]));
    assert_eq!(acks(&mut t), [Packet::Ack(2)]);
    assert!(!sink.committed.load(std::sync::atomic::Ordering::SeqCst));
    t.handle_datagram(now, &data(3, &content[1024..]));
    assert_eq!(acks(&mut t), [Packet::Ack(3)]);
    assert!(t.committed());
    assert!(sink.committed.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(*sink.data.lock().unwrap(), content);
    // Dally (RFC 1350 §6): the final ACK was lost, the client resends its last block.
    t.handle_datagram(now, &data(3, &content[1024..]));
    assert_eq!(acks(&mut t), [Packet::Ack(3)]);
    assert!(t.outcome().is_none(), "still dallying");
    let end = t.poll_timeout().unwrap();
    t.handle_timeout(end);
    assert!(matches!(t.outcome(), Some(Outcome::Completed)));
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn write_window_timeout_and_oversized_block() {
    let sink = MemSink::default();
    let mut now = Instant::now();
    let req = request(&[("blksize", "10"), ("windowsize", "3"), ("tsize", "25")]);
    let mut t = WriteTransfer::new(
        now,
        &req,
        Box::new(sink.clone()),
        &TransferConfig::default(),
    )
    .unwrap();
    assert!(matches!(&acks(&mut t)[..], [Packet::Oack(o)] if o.len() == 3));
    // The client did not get our OACK: at the deadline it is resent.
    now = t.poll_timeout().unwrap();
    t.handle_timeout(now);
    assert!(matches!(&acks(&mut t)[..], [Packet::Oack(_)]));
    let content = file(25);
    t.handle_datagram(now, &data(1, &content[..10]));
    t.handle_datagram(now, &data(2, &content[10..20]));
    assert_eq!(acks(&mut t), [], "mid-window: no ACK yet");
    t.handle_datagram(now, &data(3, &content[20..]));
    assert_eq!(acks(&mut t), [Packet::Ack(3)]);
    assert_eq!(*sink.data.lock().unwrap(), content);

    let mut t = WriteTransfer::new(
        now,
        &req,
        Box::new(MemSink::default()),
        &TransferConfig::default(),
    )
    .unwrap();
    acks(&mut t);
    t.handle_datagram(now, &data(1, &[0; 11]));
    assert!(matches!(
        &acks(&mut t)[..],
        [Packet::Error {
            code: ErrorCode::IllegalOperation,
            ..
        }]
    ));
    assert!(matches!(t.outcome(), Some(Outcome::Failed(_))));
}

#[test]
fn write_gives_up_after_retries_and_discards() {
    let sink = MemSink::default();
    let config = TransferConfig {
        max_retries: 2,
        ..TransferConfig::default()
    };
    let mut t = WriteTransfer::new(
        Instant::now(),
        &request(&[]),
        Box::new(sink.clone()),
        &config,
    )
    .unwrap();
    acks(&mut t);
    for _ in 0..2 {
        let d = t.poll_timeout().unwrap();
        t.handle_timeout(d);
        assert_eq!(acks(&mut t), [Packet::Ack(0)]);
    }
    let d = t.poll_timeout().unwrap();
    t.handle_timeout(d);
    assert!(matches!(
        t.outcome(),
        Some(Outcome::Failed(Error::TimedOut { .. }))
    ));
    assert!(!sink.committed.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn retransmission_timeout_follows_the_measured_round_trip() {
    let mut h = Harness::new(&request(&[]), file(512 * 40));
    h.sent();
    // Before any measurement: the configured timeout (1 s).
    assert_eq!(h.t.poll_timeout().unwrap() - h.now, Duration::from_secs(1));
    for block in 1..=10u16 {
        h.now += Duration::from_millis(200); // every ACK arrives 200 ms after its DATA
        h.ack(block);
        h.sent();
    }
    let rto = h.t.poll_timeout().unwrap() - h.now;
    assert!(
        rto >= Duration::from_millis(200) && rto < Duration::from_secs(1),
        "{rto:?}"
    );
    // A fast client: the timeout shrinks to the configured floor (50 ms).
    for block in 11..=40u16 {
        h.now += Duration::from_millis(1);
        h.ack(block);
        h.sent();
    }
    assert_eq!(
        h.t.poll_timeout().unwrap() - h.now,
        Duration::from_millis(50)
    );
    // Loss then doubles it per retry (RFC 1123 exponential backoff).
    h.expire();
    h.sent();
    assert_eq!(
        h.t.poll_timeout().unwrap() - h.now,
        Duration::from_millis(100)
    );
}

/// Counts the reads a transfer makes of its source.
#[derive(Debug)]
struct CountingSource {
    inner: MemorySource,
    reads: std::sync::atomic::AtomicUsize,
}

impl tftp::Source for CountingSource {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_at(offset, buf)
    }
}

#[test]
fn small_blocks_are_served_from_large_reads_and_resent_blocks_stay_exact() {
    let data = file(512 * 300 + 17);
    let source = Arc::new(CountingSource {
        inner: MemorySource::from(data.clone()),
        reads: Default::default(),
    });
    let mut now = Instant::now();
    let config = TransferConfig::default();
    let mut t = ReadTransfer::new(now, &request(&[]), source.clone(), &config).unwrap();
    let mut buf = vec![0u8; 600];
    let mut got = Vec::new();
    for block in 1..=301u16 {
        let n = t.poll_transmit(&mut buf).expect("a DATA packet");
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), block);
        got.extend_from_slice(&buf[4..n]);
        if block == 150 {
            // Lose ACK 150 once: the resent block comes from an earlier offset.
            now = t.poll_timeout().unwrap();
            t.handle_timeout(now);
            let n = t.poll_transmit(&mut buf).expect("DATA 150 again");
            assert_eq!(&buf[4..n], &data[149 * 512..150 * 512]);
        }
        t.handle_datagram(now, &Packet::Ack(block).to_vec());
    }
    assert_eq!(got, data);
    assert!(matches!(t.outcome(), Some(Outcome::Completed)));
    let reads = source.reads.load(std::sync::atomic::Ordering::Relaxed);
    assert!(reads <= 8, "{reads} reads for 301 blocks of 512 bytes");
}
