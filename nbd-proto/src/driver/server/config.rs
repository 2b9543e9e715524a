//! What a [`Server`](super::Server) may do: its limits ([`ServerConfig`]) and the TCP
//! keepalive that notices clients that vanished ([`Keepalive`], [`set_keepalive`]).

use std::os::fd::AsFd;
use std::time::Duration;

use crate::server::handshake::HandshakeConfig;

/// Limits of a [`Server`](super::Server).
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Connections served at once. When all are taken, a new connection ends the
    /// oldest one still in its handshake (see `max_handshakes`), or is closed at once.
    pub max_connections: usize,
    /// Connections in their handshake at once; past it, the oldest handshake is ended
    /// for the newcomer. Clients that connect and never finish (or keep asking for
    /// exports they may not have) therefore cannot lock devices out: a real client's
    /// handshake takes a round trip or two and is never the oldest for long.
    pub max_handshakes: usize,
    /// Handshake limits (timeout, longest option).
    pub handshake: HandshakeConfig,
    /// Payload bytes (READ and WRITE) in flight per connection.
    pub max_in_flight_bytes: usize,
    /// Requests in flight per connection.
    pub max_in_flight_requests: usize,
    /// Payload bytes held in memory across all connections: WRITE payloads, and READ
    /// replies built in buffers (READs sent with `sendfile` hold none). A request that
    /// would pass it waits, and its connection reads nothing more meanwhile, until
    /// replies of others are sent (clients that stop reading theirs are closed after
    /// `request_timeout`), so many slow readers cannot exhaust the server's memory.
    pub max_buffered_bytes: usize,
    /// READ/WRITE/BLOCK_STATUS requests up to this length run on the connection's own
    /// task instead of the blocking pool: no thread hand-off, so small random I/O is
    /// fast when the export answers from memory or the page cache. Set 0 for exports
    /// whose calls may block for long (network storage).
    pub inline_max_len: u32,
    /// Send READ data the export locates in files ([`crate::Export::locate`]) with
    /// `sendfile(2)` when it is in the page cache. Turn off for files on storage whose
    /// page cache does not stay coherent (some network file systems).
    pub zero_copy: bool,
    /// How long a client may go silent in the middle of a request (part of a request
    /// header, or of a WRITE payload, received), or leave its replies unread while the
    /// server has more to send, before its connection is closed (and the replies it
    /// holds in memory freed). Time between requests is not limited: idle clients stay
    /// connected.
    pub request_timeout: Duration,
    /// How long a connection whose client sends one request at a time polls its
    /// socket for the next request before it sleeps (zero: never). Saves a thread
    /// wake-up per request; at most one connection per spare core spins, and clients
    /// slower than this back it off (see `driver/busy_poll.rs`).
    pub busy_poll: Duration,
    /// TCP congestion control of the server's connections (`None`: the system's,
    /// `net.ipv4.tcp_congestion_control`). [`Server::serve`](super::Server::serve) sets it on the listening
    /// socket, so every connection starts with it. Default `cubic`: with BBR (the
    /// default of many distributions) the kernel paces each connection with timers
    /// unless the interface has the `fq` qdisc, which in a 100-client boot storm on
    /// loopback cost this server 3.4x the CPU and twice the time, and reordered
    /// segments across cores. Embedders with their own accept loop call
    /// [`set_congestion_control`](super::set_congestion_control) on their listener: switching a connection after it
    /// is established keeps the pacing BBR turned on.
    pub congestion_control: Option<&'static str>,
    /// TCP keepalive on every connection, so a client that vanished without a word (a
    /// device powered off, a crash, a pulled cable) is noticed and its connection
    /// closed: after `idle` of silence the kernel probes every `interval`, and gives up
    /// after `count` unanswered probes. `None`: connections of vanished clients stay
    /// until the server stops.
    pub keepalive: Option<Keepalive>,
    /// Closes a connection that has had nothing in flight and sent no request for
    /// this long. Off (`None`) by default: a Linux kernel client cannot reconnect, so
    /// closing the idle connection of a device's root file system breaks the device;
    /// keepalive already catches the clients that are gone.
    pub idle_timeout: Option<Duration>,
}

/// TCP keepalive timing (see [`ServerConfig::keepalive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

impl Default for Keepalive {
    /// 30 s, then 3 probes 10 s apart: a vanished client is gone within a minute.
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            count: 3,
        }
    }
}

/// Turns on TCP keepalive on `socket` with `keepalive`'s timing.
pub fn set_keepalive(socket: impl AsFd, keepalive: &Keepalive) -> std::io::Result<()> {
    use rustix::net::sockopt;
    let secs = |d: Duration| d.as_secs().clamp(1, i32::MAX as u64) as u32;
    sockopt::set_socket_keepalive(&socket, true)?;
    sockopt::set_tcp_keepidle(&socket, Duration::from_secs(secs(keepalive.idle).into()))?;
    sockopt::set_tcp_keepintvl(
        &socket,
        Duration::from_secs(secs(keepalive.interval).into()),
    )?;
    sockopt::set_tcp_keepcnt(&socket, keepalive.count.max(1))?;
    Ok(())
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_handshakes: 512,
            handshake: HandshakeConfig::default(),
            max_in_flight_bytes: 64 << 20,
            max_in_flight_requests: 64,
            max_buffered_bytes: 512 << 20,
            inline_max_len: 64 << 10,
            zero_copy: true,
            request_timeout: Duration::from_secs(60),
            busy_poll: Duration::from_micros(50),
            congestion_control: Some("cubic"),
            keepalive: Some(Keepalive::default()),
            idle_timeout: None,
        }
    }
}
