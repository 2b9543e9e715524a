//! The TCP congestion control of the server's connections: set on the listening socket
//! (by `Server::serve`, or by `listen` before the socket listens), so every accepted
//! connection starts with it, as `ss` (iproute2) reports it; a name the kernel does
//! not know is reported and the server serves with the system's.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use nbd_proto::driver::server::{ServerConfig, listen, set_congestion_control};
use nbd_proto::{MemoryExport, SingleExport};

fn system_default() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .expect("the system's congestion control")
        .trim()
        .to_owned()
}

fn server(congestion_control: Option<&'static str>) -> TestServer {
    let export = Arc::new(MemoryExport::new(vec![0; 1 << 20]));
    TestServer::start(
        Arc::new(SingleExport::new("disk", export)),
        ServerConfig {
            congestion_control,
            ..ServerConfig::default()
        },
    )
}

/// Connects and reads the server's greeting: the connection is accepted and served.
/// (The server sets its listener up as it starts serving: connections that came
/// before may not have the congestion control yet, so tests take a second one.)
fn greeted(server: &TestServer) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0; 18];
    s.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting[..8], b"NBDMAGIC");
    s
}

/// The congestion control of the server's side of the connection from `client`.
fn server_side(client: &TcpStream) -> String {
    let local = client.local_addr().unwrap();
    let peer = client.peer_addr().unwrap();
    let out = Command::new("ss")
        .args(["-Htin", "state", "established"])
        .arg(format!(
            "( sport = :{} and dport = :{} )",
            peer.port(),
            local.port()
        ))
        .output()
        .expect("running ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let info = text.lines().nth(1).unwrap_or_else(|| panic!("ss: {text}"));
    info.split_whitespace()
        .next()
        .expect("ss names the congestion control first")
        .to_owned()
}

/// A congestion control the system does not use already, so tests can tell them apart.
fn not_the_systems() -> &'static str {
    if system_default() == "reno" {
        "cubic"
    } else {
        "reno"
    }
}

#[test]
fn accepted_connections_start_with_the_configured_congestion_control() {
    let wanted = not_the_systems();
    let server = server(Some(wanted));
    let _first = greeted(&server);
    let client = greeted(&server);
    assert_eq!(server_side(&client), wanted);
}

#[test]
fn a_listener_from_listen_gives_it_even_to_connections_before_serve() {
    let wanted = not_the_systems();
    let config = ServerConfig {
        congestion_control: Some(wanted),
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(async { listen("127.0.0.1:0".parse().unwrap(), &config) })
        .unwrap();
    // Nothing accepts: the kernel has set the connection up from the listener alone.
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert_eq!(server_side(&client), wanted);
}

#[test]
fn without_a_congestion_control_connections_keep_the_systems() {
    let server = server(None);
    let _first = greeted(&server);
    let client = greeted(&server);
    assert_eq!(server_side(&client), system_default());
}

#[test]
fn an_unknown_congestion_control_is_an_error_naming_it_and_the_server_still_serves() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let e = set_congestion_control(&listener, "no-such-cc").unwrap_err();
    assert!(e.to_string().contains("\"no-such-cc\""), "{e}");

    let server = server(Some("no-such-cc"));
    let _first = greeted(&server);
    let client = greeted(&server);
    assert_eq!(server_side(&client), system_default());
}
