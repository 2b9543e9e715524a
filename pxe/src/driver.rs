//! The tokio UDP driver (feature `server`): sockets bound to one interface on ports 67
//! and 4011, broadcast replies for clients without an address, a listener on port 68
//! that overhears other servers (rival detection), and optionally router
//! advertisements with lifetime 0. All decisions are the crate's pure functions; this
//! file only moves bytes and logs.
//!
//! Each received packet's parsing and deciding runs under `contain`: a panic there (a
//! bug tripped by one packet, or in an embedder's [`BootPolicy`]) is logged, counted in
//! [`DriverStats::panics`] and drops that packet; the sockets keep serving.

use std::fmt::Display;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{debug, error, info, warn};

use crate::error::{Error, Result};
use crate::full::FullDhcp;
use crate::policy::{BootPolicy, Policy};
use crate::proxy::{self, Ignored};
use crate::reply::{self, Destination, Reply};
use crate::rivals::Rivals;
use crate::wire::{Message, Op};

/// What the server answers.
pub enum Mode {
    /// ProxyDHCP: boot information only, never addresses.
    Proxy(Policy),
    /// ProxyDHCP with each client's policy from the embedder (a device database): the
    /// driver asks it about every PXE or HTTP boot client, holding no lock meanwhile.
    ProxyFrom(Arc<dyn BootPolicy>),
    /// Full DHCP: addresses and boot information; leases saved to the file if given.
    Full {
        /// The server state.
        server: Box<FullDhcp>,
        /// Where the lease table is saved after each change.
        leases_path: Option<PathBuf>,
    },
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Proxy(p) => f.debug_tuple("Proxy").field(p).finish(),
            Mode::ProxyFrom(p) => f
                .debug_tuple("ProxyFrom")
                .field(&format_args!("server {}", p.server_ip()))
                .finish(),
            Mode::Full {
                server,
                leases_path,
            } => f
                .debug_struct("Full")
                .field("server", server)
                .field("leases_path", leases_path)
                .finish(),
        }
    }
}

impl Mode {
    fn server_ip(&self) -> Ipv4Addr {
        match self {
            Mode::Proxy(p) => p.server_ip,
            Mode::ProxyFrom(p) => p.server_ip(),
            Mode::Full { server, .. } => server.policy().server_ip,
        }
    }
}

/// Sockets and ports.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The interface to bind to (SO_BINDTODEVICE); `None` binds to all (tests only).
    pub interface: Option<String>,
    /// Address to bind the sockets to (normally 0.0.0.0 to receive broadcasts).
    pub listen: Ipv4Addr,
    /// DHCP server port (67).
    pub dhcp_port: u16,
    /// PXE boot server port (4011); `None` disables it.
    pub boot_port: Option<u16>,
    /// Port clients listen on (68): broadcast replies go there, rivals are heard there.
    pub client_port: u16,
    /// Listen on the client port to report other servers.
    pub watch_rivals: bool,
    /// Answer IPv6 router solicitations with a lifetime-0 advertisement.
    pub router_advertisements: bool,
}

impl DriverConfig {
    /// The standard ports on `interface`, rival watch on, router advertisements off.
    pub fn new(interface: Option<String>) -> Self {
        Self {
            interface,
            listen: Ipv4Addr::UNSPECIFIED,
            dhcp_port: reply::SERVER_PORT,
            boot_port: Some(reply::BOOT_SERVER_PORT),
            client_port: reply::CLIENT_PORT,
            watch_rivals: true,
            router_advertisements: false,
        }
    }
}

/// Full mode's mutable state: one lock, taken per message.
struct FullState {
    server: Box<FullDhcp>,
    leases_path: Option<PathBuf>,
}

/// Who decides the answers. Proxy policies are shared without a lock, so a slow
/// per-client lookup never serialises the sockets behind a mutex.
enum Answers {
    Proxy(Arc<dyn BootPolicy>),
    Full(Mutex<FullState>),
}

struct State {
    answers: Answers,
    /// Deciding may wait on I/O: an embedder's policy (a database lookup, a device
    /// added) or full mode's lease file. On a multi-thread runtime such decisions run
    /// in `block_in_place`, so the runtime moves its other tasks (NBD connections in a
    /// combined server) off this thread meanwhile.
    blocking: bool,
    rivals: Mutex<Rivals>,
    stats: Arc<DriverStats>,
}

/// What a running driver did, for metrics. Counters only grow.
#[derive(Debug, Default)]
pub struct DriverStats {
    /// Replies sent (offers, ACKs, NAKs).
    pub replies: AtomicU64,
    /// Requests left unanswered on purpose (not a boot client, unknown device, ...).
    pub silent: AtomicU64,
    /// Malformed packets dropped.
    pub malformed: AtomicU64,
    /// Other DHCP or ProxyDHCP servers seen answering on the segment (distinct).
    pub rivals: AtomicU64,
    /// IPv6 router solicitations answered.
    pub router_advertisements: AtomicU64,
    /// Packets dropped because handling them panicked (a bug: each is logged at ERROR).
    pub panics: AtomicU64,
}

impl DriverStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A bound server; [`Driver::run`] serves until an I/O error or until dropped.
pub struct Driver {
    config: DriverConfig,
    state: Arc<State>,
    dhcp: UdpSocket,
    boot: Option<UdpSocket>,
    watch: Option<UdpSocket>,
    ra: Option<UdpSocket>,
}

fn udp_socket(interface: Option<&str>, addr: SocketAddrV4) -> Result<UdpSocket> {
    let what = format!(
        "binding UDP {addr}{}",
        interface.map(|i| format!(" on {i}")).unwrap_or_default()
    );
    let setup = || -> std::io::Result<UdpSocket> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_broadcast(true)?;
        if let Some(i) = interface {
            s.bind_device(Some(i.as_bytes()))?;
        }
        s.set_nonblocking(true)?;
        s.bind(&SocketAddr::V4(addr).into())?;
        UdpSocket::from_std(s.into())
    };
    setup().map_err(|e| Error::io(what, e))
}

fn ra_socket(interface: &str) -> Result<(UdpSocket, u32)> {
    let what = format!("opening an ICMPv6 socket on {interface} for router advertisements");
    let setup = || -> std::io::Result<(UdpSocket, u32)> {
        let index: u32 = std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))?
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other("bad ifindex"))?;
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        s.bind_device(Some(interface.as_bytes()))?;
        s.set_multicast_hops_v6(255)?;
        s.set_unicast_hops_v6(255)?;
        s.join_multicast_v6(&Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2), index)?;
        s.set_nonblocking(true)?;
        // A raw socket behind tokio's UDP type: recv_from/send_to are the same calls.
        Ok((UdpSocket::from_std(s.into())?, index))
    };
    setup().map_err(|e| Error::io(what, e))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Driver {
    /// Binds the sockets. Must run inside a tokio runtime.
    pub async fn bind(config: DriverConfig, mode: Mode) -> Result<Driver> {
        let iface = config.interface.as_deref();
        let dhcp = udp_socket(iface, SocketAddrV4::new(config.listen, config.dhcp_port))?;
        let boot = config
            .boot_port
            .map(|p| udp_socket(iface, SocketAddrV4::new(config.listen, p)))
            .transpose()?;
        let watch = if config.watch_rivals {
            match udp_socket(iface, SocketAddrV4::new(config.listen, config.client_port)) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(error = %e, "rival detection off: cannot listen on the client port");
                    None
                }
            }
        } else {
            None
        };
        let ra = match (&config.interface, config.router_advertisements) {
            (Some(i), true) => Some(ra_socket(i)?.0),
            (None, true) => {
                return Err(Error::Config(
                    "router advertisements need an interface".into(),
                ));
            }
            _ => None,
        };
        let ours = [mode.server_ip()];
        let blocking = !matches!(mode, Mode::Proxy(_));
        let answers = match mode {
            Mode::Proxy(policy) => Answers::Proxy(Arc::new(policy)),
            Mode::ProxyFrom(policy) => Answers::Proxy(policy),
            Mode::Full {
                server,
                leases_path,
            } => Answers::Full(Mutex::new(FullState {
                server,
                leases_path,
            })),
        };
        Ok(Driver {
            state: Arc::new(State {
                answers,
                blocking,
                rivals: Mutex::new(Rivals::new(ours)),
                stats: Arc::default(),
            }),
            config,
            dhcp,
            boot,
            watch,
            ra,
        })
    }

    /// The driver's counters; they keep counting while [`Driver::run`] serves.
    pub fn stats(&self) -> Arc<DriverStats> {
        self.state.stats.clone()
    }

    /// The local port of the DHCP socket (useful when bound to port 0 in tests).
    pub fn dhcp_port(&self) -> u16 {
        self.dhcp.local_addr().map_or(0, |a| a.port())
    }

    /// The local port of the boot server socket.
    pub fn boot_port(&self) -> Option<u16> {
        self.boot
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port())
    }

    /// Serves until an I/O error.
    pub async fn run(self) -> Result<()> {
        let Driver {
            config,
            state,
            dhcp,
            boot,
            watch,
            ra,
        } = self;
        let config = Arc::new(config);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(serve(
            Arc::new(dhcp),
            Port::Dhcp,
            state.clone(),
            config.clone(),
        ));
        if let Some(b) = boot {
            tasks.spawn(serve(
                Arc::new(b),
                Port::Boot,
                state.clone(),
                config.clone(),
            ));
        }
        if let Some(w) = watch {
            tasks.spawn(serve(
                Arc::new(w),
                Port::Watch,
                state.clone(),
                config.clone(),
            ));
        }
        if let Some(r) = ra {
            let iface = config.interface.clone().unwrap_or_default();
            tasks.spawn(answer_solicitations(r, iface, state.stats.clone()));
        }
        info!(
            interface = config.interface.as_deref().unwrap_or("*"),
            dhcp_port = config.dhcp_port,
            boot_port = ?config.boot_port,
            "pxe server running"
        );
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Err(e)) => return Err(e),
                Ok(Ok(())) => {}
                Err(e) => {
                    return Err(Error::io(
                        "server task failed",
                        std::io::Error::other(e.to_string()),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Dhcp,
    Boot,
    Watch,
}

/// Runs `step`, the I/O-free handling of one packet from `peer`. A panic in it is
/// caught, logged at ERROR with the peer, counted in [`DriverStats::panics`], and the
/// packet dropped (`None`), so one packet that trips a bug cannot stop a socket's task
/// (and with it [`Driver::run`]). Unwinding is safe to observe here: the state a step
/// touches is behind locks that are taken poison-tolerantly, and a half-made change to
/// it (a lease) is no worse than the same packet lost on the wire.
fn contain<T>(stats: &DriverStats, peer: impl Display, step: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(step)) {
        Ok(done) => Some(done),
        Err(payload) => {
            DriverStats::bump(&stats.panics);
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            error!(%peer, panic = what, "handling a packet panicked; packet dropped");
            None
        }
    }
}

/// One received message and the decision on it: what [`serve`] logs and sends.
struct Decided {
    msg: Message,
    mac: String,
    /// `None`: only observed (rival detection). A reply comes with its encoding.
    outcome: Option<Result<(Reply, Vec<u8>), Ignored>>,
}

/// Parses and decides one packet (an error: not a DHCP message); no I/O but the
/// embedder's policy and the lease file.
fn handle(state: &State, port: Port, packet: &[u8], src: SocketAddrV4) -> Result<Decided> {
    let msg = Message::parse(packet)?;
    let outcome = decide(state, port, &msg, src).map(|r| {
        r.map(|reply| {
            let bytes = reply.message.encode();
            (reply, bytes)
        })
    });
    let mac = msg
        .mac()
        .map(|m| crate::request::format_mac(&m))
        .unwrap_or_default();
    Ok(Decided { msg, mac, outcome })
}

fn decide(
    state: &State,
    port: Port,
    msg: &Message,
    src: SocketAddrV4,
) -> Option<Result<Reply, Ignored>> {
    if port == Port::Watch || msg.op == Op::BootReply {
        let mut rivals = state.rivals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(report) = rivals.observe(*src.ip(), msg) {
            let seen = rivals.boot_servers().count() as u64;
            state.stats.rivals.fetch_max(seen, Ordering::Relaxed);
            if report.is_boot_server() {
                warn!(rival = %report.server, proxy = report.proxy, "another server answers PXE clients on this segment: {report}");
            } else {
                info!(server = %report.server, "a DHCP server hands out addresses on this segment (expected beside a ProxyDHCP): {report}");
            }
        }
        return None;
    }
    Some(match &state.answers {
        Answers::Proxy(policy) if port == Port::Dhcp => proxy::offer(msg, &**policy),
        Answers::Proxy(policy) => proxy::boot_ack(msg, src, &**policy),
        Answers::Full(full) => {
            let mut full = full.lock().unwrap_or_else(|p| p.into_inner());
            let FullState {
                server,
                leases_path,
            } = &mut *full;
            if port == Port::Boot {
                proxy::boot_ack(msg, src, server.boot_policy())
            } else {
                let r = server.handle(now_unix(), msg);
                if server.take_dirty()
                    && let Some(path) = leases_path
                    && let Err(e) = server.leases().save(path)
                {
                    warn!(error = %e, "cannot save the lease file");
                }
                r
            }
        }
    })
}

async fn serve(
    sock: Arc<UdpSocket>,
    port: Port,
    state: Arc<State>,
    config: Arc<DriverConfig>,
) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    let block_in_place = state.blocking
        && tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "receive failed");
                continue;
            }
        };
        let SocketAddr::V4(src) = src else { continue };
        let packet = &buf[..n];
        let step = || contain(&state.stats, src, || handle(&state, port, packet, src));
        let handled = if block_in_place {
            tokio::task::block_in_place(step)
        } else {
            step()
        };
        let (msg, mac, outcome) = match handled {
            None => continue,
            Some(Err(e)) => {
                DriverStats::bump(&state.stats.malformed);
                warn!(%src, bytes = n, error = %e, "dropping malformed DHCP packet");
                continue;
            }
            Some(Ok(Decided { outcome: None, .. })) => continue,
            Some(Ok(Decided {
                msg,
                mac,
                outcome: Some(outcome),
            })) => (msg, mac, outcome),
        };
        let stats = &state.stats;
        match outcome {
            Ok((reply, bytes)) => {
                if send(&sock, &reply, &bytes, &config, &mac).await {
                    DriverStats::bump(&stats.replies);
                }
            }
            Err(Ignored::Malformed(e)) => {
                DriverStats::bump(&stats.malformed);
                warn!(%src, %mac, error = %e, "dropping malformed DHCP message")
            }
            Err(Ignored::Silent(why)) => {
                DriverStats::bump(&stats.silent);
                debug!(%src, %mac, xid = msg.xid, "not answering: {why}")
            }
        }
    }
}

/// Sends a reply (`bytes`, its encoding); false when the send failed (logged).
async fn send(
    sock: &UdpSocket,
    reply: &Reply,
    bytes: &[u8],
    config: &DriverConfig,
    mac: &str,
) -> bool {
    let to = match reply.to {
        Destination::Broadcast(p) => {
            let p = if p == reply::CLIENT_PORT {
                config.client_port
            } else {
                p
            };
            SocketAddrV4::new(Ipv4Addr::BROADCAST, p)
        }
        Destination::Unicast(a) if a.port() == reply::CLIENT_PORT => {
            SocketAddrV4::new(*a.ip(), config.client_port)
        }
        Destination::Unicast(a) => a,
    };
    let kind = reply.message.message_type();
    match sock.send_to(bytes, to).await {
        Ok(_) => {
            info!(
                %to, %mac, xid = reply.message.xid, kind = ?kind,
                yiaddr = %reply.message.yiaddr,
                file = reply.message.file_name().unwrap_or_default(),
                "reply sent"
            );
            true
        }
        Err(e) => {
            warn!(%to, %mac, error = %e, "sending reply failed");
            false
        }
    }
}

async fn answer_solicitations(
    sock: UdpSocket,
    interface: String,
    stats: Arc<DriverStats>,
) -> Result<()> {
    let index: u32 = std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mac = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))
        .ok()
        .and_then(|s| crate::request::parse_mac(s.trim()));
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
    let ra = crate::ra::router_advertisement(mac);
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let packet = &buf[..n];
        if contain(&stats, src, || crate::ra::is_router_solicitation(packet)) != Some(true) {
            continue;
        }
        match sock.send_to(&ra, all_nodes).await {
            Ok(_) => {
                DriverStats::bump(&stats.router_advertisements);
                info!(%src, "router solicitation answered (router lifetime 0)")
            }
            Err(e) => warn!(%src, error = %e, "sending router advertisement failed"),
        }
    }
}
