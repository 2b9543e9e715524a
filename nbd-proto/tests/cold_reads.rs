//! Small READs of file bytes that are not in the page cache go to the blocking pool:
//! a slow disk read never holds an async worker, so the other clients of that worker
//! are served meanwhile (small reads of cached bytes stay on the connection's task).

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use nbd_proto::driver::server::ServerConfig;
use nbd_proto::wire::consts::*;
use nbd_proto::wire::request::{Command, Request};
use nbd_proto::{Capabilities, Errno, Export, Located, SingleExport};

const SIZE: u64 = 1 << 20;

/// A sparse file (nothing of it in the page cache) whose reads take `delay`, like a
/// busy disk.
struct SlowDisk {
    file: Arc<File>,
    delay: Duration,
}

impl Export for SlowDisk {
    fn size(&self) -> u64 {
        SIZE
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::READ_ONLY
    }
    fn read(&self, buf: &mut [u8], _offset: u64) -> Result<(), Errno> {
        std::thread::sleep(self.delay);
        buf.fill(0);
        Ok(())
    }
    fn locate(&self, offset: u64, len: u64) -> Option<Vec<Located>> {
        Some(vec![Located::File {
            file: self.file.clone(),
            offset,
            len,
        }])
    }
}

/// Connects and opens the export the short way (fixed newstyle, EXPORT_NAME); returns
/// the stream in transmission.
fn open(server: &TestServer) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0; 18];
    s.read_exact(&mut greeting).unwrap();
    s.write_all(&(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();
    let mut opt = Vec::new();
    opt.extend_from_slice(&NBD_OPTS_MAGIC.to_be_bytes());
    opt.extend_from_slice(&NBD_OPT_EXPORT_NAME.to_be_bytes());
    opt.extend_from_slice(&4u32.to_be_bytes());
    opt.extend_from_slice(b"disk");
    s.write_all(&opt).unwrap();
    let mut size_and_flags = [0; 10];
    s.read_exact(&mut size_and_flags).unwrap();
    s
}

fn read(s: &mut TcpStream, offset: u64) {
    let mut out = Vec::new();
    Request {
        flags: 0,
        command: Command::Read,
        cookie: offset,
        offset,
        length: 4096,
    }
    .emit(&mut out);
    s.write_all(&out).unwrap();
    let mut reply = vec![0; SIMPLE_REPLY_HEADER_LEN + 4096];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[4..8], &[0; 4], "READ at {offset} failed");
}

#[test]
fn a_slow_cold_read_does_not_hold_the_async_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    File::create(&path).unwrap().set_len(SIZE).unwrap();
    let delay = Duration::from_millis(400);
    let export = SlowDisk {
        file: Arc::new(File::open(&path).unwrap()),
        delay,
    };
    // One async worker: a read held on it would hold every connection.
    let server = TestServer::start_on(
        Arc::new(SingleExport::new("disk", Arc::new(export))),
        ServerConfig::default(),
        1,
    );
    let mut slow = open(&server);
    let reader = std::thread::spawn(move || read(&mut slow, 0));
    std::thread::sleep(Duration::from_millis(50));
    // Meanwhile another client connects and is greeted.
    let start = Instant::now();
    let _other = open(&server);
    let waited = start.elapsed();
    assert!(
        waited < delay / 2,
        "a new client waited {waited:?} for the handshake while a cold read took {delay:?}"
    );
    reader.join().unwrap();
}
