//! Our client and server transfers talk through a simulated network that loses,
//! duplicates and reorders datagrams, in virtual time (proptest over seeds, rates,
//! block and window sizes): the client must end with exactly the file, every time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tftp::packet::{Packet, Request};
use tftp::provider::MemorySource;
use tftp::transfer::{ClientRead, Outcome, ReadTransfer, TransferConfig};
use tftp::{Error, Options};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum To {
    Server,
    Client,
}

/// Runs one transfer; returns the client's data and both outcomes.
fn simulate(
    len: usize,
    options: Options,
    seed: u64,
    loss: u64,
    dup: u64,
    reorder: u64,
) -> (Option<Outcome>, Option<Outcome>, Vec<u8>, Vec<u8>) {
    let file: Vec<u8> = (0..len).map(|i| (i % 253) as u8 ^ (i >> 9) as u8).collect();
    let config = TransferConfig {
        max_retries: 30,
        max_retries_unconfirmed: 30,
        ..TransferConfig::default()
    };
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let mut now = start;
    let mut client = ClientRead::new(now, "f", options, &config);
    let mut server: Option<ReadTransfer> = None;
    // (delivery time, sequence) -> (destination, bytes)
    let mut wire: BTreeMap<(Instant, u64), (To, Vec<u8>)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 70000];
    let mut send =
        |wire: &mut BTreeMap<_, _>, rng: &mut Rng, now: Instant, to: To, bytes: &[u8]| {
            if rng.chance(loss) {
                return;
            }
            let copies = if rng.chance(dup) { 2 } else { 1 };
            for _ in 0..copies {
                let delay = if rng.chance(reorder) {
                    1 + rng.next() % 30
                } else {
                    1
                };
                seq += 1;
                wire.insert(
                    (now + Duration::from_millis(delay), seq),
                    (to, bytes.to_vec()),
                );
            }
        };
    for _step in 0..2_000_000 {
        while let Some(n) = client.poll_transmit(&mut buf) {
            send(&mut wire, &mut rng, now, To::Server, &buf[..n]);
        }
        if let Some(s) = server.as_mut() {
            while let Some(n) = s.poll_transmit(&mut buf) {
                send(&mut wire, &mut rng, now, To::Client, &buf[..n]);
            }
        }
        let client_done = client.outcome().is_some();
        let server_done = server.as_ref().is_some_and(|s| s.outcome().is_some());
        if client_done && (server_done || server.is_none()) {
            break;
        }
        let mut next = wire.keys().next().map(|k| k.0);
        for d in [
            client.poll_timeout(),
            server.as_ref().and_then(|s| s.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        {
            next = Some(next.map_or(d, |n: Instant| n.min(d)));
        }
        let Some(next) = next else { break };
        now = now.max(next);
        while let Some(entry) = wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (to, bytes) = entry.remove();
            match to {
                To::Client => client.handle_datagram(now, &bytes),
                To::Server => match (&mut server, Packet::parse(&bytes)) {
                    (None, Ok(Packet::Rrq(req))) => {
                        let req: Request = req;
                        let source = Arc::new(MemorySource::from(file.clone()));
                        server = Some(ReadTransfer::new(now, &req, source, &config).unwrap());
                    }
                    (Some(s), _) => s.handle_datagram(now, &bytes),
                    (None, _) => {}
                },
            }
        }
        client.handle_timeout(now);
        if let Some(s) = server.as_mut() {
            s.handle_timeout(now);
        }
    }
    let data = client.take_data();
    (
        client.take_outcome(),
        server.and_then(|mut s| s.take_outcome()),
        data,
        file,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn client_gets_exactly_the_file(
        seed in any::<u64>(),
        len in 0usize..40_000,
        blksize in prop_oneof![Just(None), Just(Some(8u16)), Just(Some(512)), Just(Some(1468))],
        windowsize in prop_oneof![Just(None), Just(Some(1u16)), Just(Some(4)), Just(Some(16))],
        loss in 0u64..25,
        dup in 0u64..20,
        reorder in 0u64..20,
    ) {
        let options = Options { blksize, windowsize, ..Options::default() };
        let (client, server, data, file) = simulate(len, options, seed, loss, dup, reorder);
        prop_assert!(matches!(client, Some(Outcome::Completed)), "client: {client:?}");
        prop_assert!(data == file, "data differs: {} vs {} bytes", data.len(), file.len());
        // The server completes, unless the final ACK was lost and it gave up resending
        // the last block to a client that had already finished (RFC 1350 §6).
        prop_assert!(
            matches!(server, Some(Outcome::Completed) | Some(Outcome::Failed(Error::TimedOut { .. }))),
            "server: {server:?}"
        );
    }
}

#[test]
fn perfect_network_large_window() {
    let options = Options {
        blksize: Some(1468),
        windowsize: Some(16),
        tsize: Some(0),
        ..Options::default()
    };
    let (client, server, data, file) = simulate(1_000_000, options, 7, 0, 0, 0);
    assert!(matches!(client, Some(Outcome::Completed)));
    assert!(matches!(server, Some(Outcome::Completed)));
    assert!(data == file);
}

#[derive(Debug, Clone, Default)]
struct MemSink(Arc<std::sync::Mutex<(Vec<u8>, bool)>>);

impl tftp::Sink for MemSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut g = self.0.lock().unwrap();
        let end = offset as usize + data.len();
        if g.0.len() < end {
            g.0.resize(end, 0);
        }
        g.0[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn commit(self: Box<Self>) -> std::io::Result<()> {
        self.0.lock().unwrap().1 = true;
        Ok(())
    }
}

/// An upload through the same kind of network: our ClientWrite to our WriteTransfer.
fn simulate_upload(
    len: usize,
    options: Options,
    seed: u64,
    loss: u64,
    dup: u64,
) -> (Option<Outcome>, Vec<u8>, bool, Vec<u8>) {
    use tftp::transfer::{ClientWrite, WriteTransfer};
    let file: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
    let config = TransferConfig {
        max_retries: 30,
        max_retries_unconfirmed: 30,
        ..TransferConfig::default()
    };
    let mut rng = Rng(seed | 1);
    let mut now = Instant::now();
    let source = Arc::new(MemSource::from(file.clone()));
    let mut client = ClientWrite::new(now, "up", source, options, &config);
    let sink = MemSink::default();
    let mut server: Option<WriteTransfer> = None;
    let mut wire: BTreeMap<(Instant, u64), (To, Vec<u8>)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 70000];
    for _ in 0..2_000_000 {
        let mut out = Vec::new();
        while let Some(n) = client.poll_transmit(&mut buf) {
            out.push((To::Server, buf[..n].to_vec()));
        }
        if let Some(s) = server.as_mut() {
            while let Some(n) = s.poll_transmit(&mut buf) {
                out.push((To::Client, buf[..n].to_vec()));
            }
        }
        for (to, bytes) in out {
            if rng.chance(loss) {
                continue;
            }
            for _ in 0..if rng.chance(dup) { 2 } else { 1 } {
                seq += 1;
                let delay = 1 + rng.next() % 3;
                wire.insert(
                    (now + Duration::from_millis(delay), seq),
                    (to, bytes.clone()),
                );
            }
        }
        if client.outcome().is_some() {
            break;
        }
        let mut next = wire.keys().next().map(|k| k.0);
        for d in [
            client.poll_timeout(),
            server.as_ref().and_then(|s| s.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        {
            next = Some(next.map_or(d, |n: Instant| n.min(d)));
        }
        let Some(next) = next else { break };
        now = now.max(next);
        while let Some(entry) = wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (to, bytes) = entry.remove();
            match to {
                To::Client => client.handle_datagram(now, &bytes),
                To::Server => match (&mut server, Packet::parse(&bytes)) {
                    (None, Ok(Packet::Wrq(req))) => {
                        server = Some(
                            WriteTransfer::new(now, &req, Box::new(sink.clone()), &config).unwrap(),
                        );
                    }
                    (Some(s), _) => s.handle_datagram(now, &bytes),
                    (None, _) => {}
                },
            }
        }
        client.handle_timeout(now);
        if let Some(s) = server.as_mut() {
            s.handle_timeout(now);
        }
    }
    let (data, committed) = sink.0.lock().unwrap().clone();
    (client.take_outcome(), data, committed, file)
}

use tftp::MemorySource as MemSource;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn uploads_arrive_exactly(
        seed in any::<u64>(),
        len in 0usize..30_000,
        blksize in prop_oneof![Just(None), Just(Some(64u16)), Just(Some(1468))],
        windowsize in prop_oneof![Just(None), Just(Some(1u16)), Just(Some(8))],
        loss in 0u64..20,
        dup in 0u64..15,
    ) {
        let options = Options { blksize, windowsize, tsize: Some(0), ..Options::default() };
        let (client, data, committed, file) = simulate_upload(len, options, seed, loss, dup);
        // The client may give up after the final ACK was lost many times; when it
        // reports success, the server must hold exactly the file, committed.
        if matches!(client, Some(Outcome::Completed)) {
            prop_assert!(committed);
            prop_assert!(data == file, "{} vs {} bytes", data.len(), file.len());
        } else {
            prop_assert!(matches!(client, Some(Outcome::Failed(Error::TimedOut { .. }))), "{client:?}");
        }
        if loss == 0 {
            prop_assert!(matches!(client, Some(Outcome::Completed)), "{client:?}");
        }
    }
}
