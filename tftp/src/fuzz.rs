//! Entry points of the fuzz targets (`fuzz/fuzz_targets/tftp_*.rs`), also replayed over
//! the seed corpus by `tests/fuzz_corpus.rs` so stable CI runs them. Each panics only on
//! a broken invariant, never on bad input.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Options;
use crate::packet::{MAX_REQUEST_LEN, Mode, Packet, Request};
use crate::provider::{MemorySource, Sink};
use crate::transfer::{ClientRead, ReadTransfer, TransferConfig, WriteTransfer};

/// Parses arbitrary bytes as a packet; whatever parses must emit and parse back the same.
pub fn packet(data: &[u8]) {
    let Ok(p) = Packet::parse(data) else { return };
    let bytes = p.to_vec();
    assert_eq!(bytes.len(), p.buffer_len());
    if matches!(p, Packet::Rrq(_) | Packet::Wrq(_)) && bytes.len() > MAX_REQUEST_LEN {
        return; // lossy UTF-8 replacement can grow a request past the limit
    }
    let again = Packet::parse(&bytes).expect("an emitted packet parses");
    match (&p, &again) {
        (Packet::Error { code: a, .. }, Packet::Error { code: b, .. }) => assert_eq!(a, b),
        _ => assert_eq!(p, again),
    }
}

#[derive(Debug, Default)]
struct NullSink(u64);

impl Sink for NullSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0 = self.0.max(offset + data.len() as u64);
        Ok(())
    }
    fn commit(self: Box<Self>) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads bytes from the front of the script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// Drives a server read, a server write and a client read with a script of datagrams
/// and clock steps; checks that no transfer sends more than its block size, runs away,
/// or talks after it ended.
pub fn transfer(data: &[u8]) {
    let mut s = Script(data);
    let (Some(opts), Some(size_hi), Some(size_lo)) = (s.byte(), s.byte(), s.byte()) else {
        return;
    };
    let size = usize::from(size_hi) * 97 + usize::from(size_lo);
    let options = Options {
        blksize: (opts & 1 != 0).then_some(8 + u16::from(opts >> 4) * 16),
        windowsize: (opts & 2 != 0).then_some(1 + u16::from(opts >> 5)),
        tsize: (opts & 4 != 0).then_some(0),
        timeout: (opts & 8 != 0).then_some(1),
    };
    let request = Request {
        filename: "f".into(),
        mode: Mode::Octet,
        options: options.to_pairs(),
    };
    let config = TransferConfig {
        max_retries: 3,
        ..TransferConfig::default()
    };
    let mut now = Instant::now();
    let file: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let Ok(mut read) =
        ReadTransfer::new(now, &request, Arc::new(MemorySource::from(file)), &config)
    else {
        return;
    };
    let Ok(mut write) = WriteTransfer::new(now, &request, Box::new(NullSink::default()), &config)
    else {
        return;
    };
    let mut client = ClientRead::new(now, "f", options, &config);
    let mut buf = vec![0u8; 70000];
    let max_data = 4 + usize::from(options.blksize.unwrap_or(512));
    while let Some(op) = s.byte() {
        let datagram: Vec<u8> = match op % 5 {
            0 => Packet::Ack(s.u16().unwrap_or(0)).to_vec(),
            1 => {
                let block = s.u16().unwrap_or(1);
                let len = usize::from(s.byte().unwrap_or(0));
                let payload = s.take(len).to_vec();
                Packet::Data {
                    block,
                    data: &payload,
                }
                .to_vec()
            }
            2 => {
                let len = usize::from(s.byte().unwrap_or(0));
                s.take(len).to_vec()
            }
            3 => {
                now += Duration::from_millis(u64::from(s.byte().unwrap_or(0)) * 40);
                Vec::new()
            }
            _ => Packet::Oack(options.to_pairs()).to_vec(),
        };
        if !datagram.is_empty() {
            read.handle_datagram(now, &datagram);
            write.handle_datagram(now, &datagram);
            client.handle_datagram(now, &datagram);
        }
        read.handle_timeout(now);
        write.handle_timeout(now);
        client.handle_timeout(now);
        let mut sent = 0;
        while let Some(n) = read.poll_transmit(&mut buf) {
            assert!(n <= max_data.max(520), "server read sent {n} bytes");
            sent += 1;
            assert!(sent <= 70_000, "server read runs away");
        }
        for _ in 0..4 {
            let _ = write.poll_transmit(&mut buf);
            let _ = client.poll_transmit(&mut buf);
        }
        if read.is_finished() {
            assert!(
                read.poll_transmit(&mut buf).is_none(),
                "talks after the end"
            );
        }
    }
}
