//! A crowd of clients that connect and never finish their handshake (strangers on the
//! boot network, a port scanner, a flood) cannot lock a real client out; a connection
//! idle past `ServerConfig::idle_timeout` is closed; an export's end signal closes its
//! connections.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use nbd_proto::client::handshake::ClientConfig;
use nbd_proto::driver::client::Client;
use nbd_proto::driver::server::ServerConfig;
use nbd_proto::{Capabilities, EndSignal, Errno, Export, MemoryExport, SingleExport};

const STRANGERS: usize = 5000;

/// Connects and reads the greeting, then says nothing more.
fn stranger(addr: std::net::SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut greeting = [0; 18];
    s.read_exact(&mut greeting).ok()?;
    Some(s)
}

#[test]
fn five_thousand_silent_strangers_do_not_lock_a_client_out() {
    let nbdinfo = testkit::require_peer!("nbdinfo");
    let (server, _) = TestServer::memory("disk", 1 << 20);
    let mut crowd = Vec::with_capacity(STRANGERS);
    for _ in 0..STRANGERS {
        // Past the connection limit a newcomer ends the oldest handshake, so the
        // greeting may never come for some: they are strangers all the same.
        if let Some(s) = stranger(server.addr) {
            crowd.push(s);
        }
    }
    let out = testkit::run(Command::new(&nbdinfo).args(["--size", &server.uri("disk")]));
    assert_eq!(out.trim(), (1 << 20).to_string());
    assert!(
        crowd.len() > 4000,
        "only {} strangers got a greeting",
        crowd.len()
    );
    drop(crowd);
    server.shutdown();
}

/// Connects to export `disk` of `server` and runs `f` on the client.
fn with_client(server: &TestServer, f: impl AsyncFnOnce(Client)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = ClientConfig {
            export: "disk".into(),
            ..ClientConfig::default()
        };
        f(Client::connect(server.addr, config).await.unwrap()).await;
    });
}

#[test]
fn idle_connections_close_after_the_idle_timeout() {
    let export = Arc::new(MemoryExport::new(vec![0; 4096]));
    let config = ServerConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..ServerConfig::default()
    };
    let server = TestServer::start(Arc::new(SingleExport::new("disk", export)), config);
    with_client(&server, async |client| {
        client.read(0, 512).await.unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(
            client.read(0, 512).await.is_err(),
            "an idle connection was kept"
        );
    });
    server.shutdown();
}

/// An export whose connections end when told to.
struct Ending {
    inner: MemoryExport,
    end: EndSignal,
}

impl Export for Ending {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        self.inner.read(buf, offset)
    }
    fn end_signal(&self) -> Option<EndSignal> {
        Some(self.end.clone())
    }
}

#[test]
fn an_ended_export_closes_its_idle_connections() {
    let end = EndSignal::default();
    let export = Arc::new(Ending {
        inner: MemoryExport::new(vec![7; 4096]),
        end: end.clone(),
    });
    let server = TestServer::start(
        Arc::new(SingleExport::new("disk", export)),
        ServerConfig::default(),
    );
    with_client(&server, async |client| {
        assert_eq!(client.read(0, 4).await.unwrap(), [7; 4]);
        end.end();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            client.read(0, 4).await.is_err(),
            "the ended export is still served"
        );
    });
    server.shutdown();
}
