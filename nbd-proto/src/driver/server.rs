//! A TCP server that serves the exports of an [`ExportProvider`].
//!
//! Per connection: one task reads requests and hands each to tokio's blocking pool,
//! where [`Transmission::execute`] calls the export; replies go to a writer task in
//! the order they finish. Small requests run on the reading task itself, except READs
//! of file bytes that are not in the page cache. A READ whose
//! bytes the export locates in files that are in the page cache is not executed at
//! all: the writer task sends it with `sendfile(2)`, never copying it through a
//! buffer. Memory is bounded per connection (in-flight payload bytes and request
//! count) and across the server (connection count, handshake timeout, bytes held in
//! buffers).
//! [`ShutdownHandle::shutdown`] stops accepting, lets in-flight requests finish and
//! closes every connection.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::driver::busy_poll::BusyPoll;
use crate::driver::handshaking::{Handshaking, Place};
use crate::driver::pool::BufferPool;
use crate::driver::zero_copy;
use crate::error::{Error, Result};
use crate::export::{Errno, ExportProvider, Located};
use crate::server::handshake::{Handshake, HandshakeConfig, Progress};
use crate::server::transmission::{Op, Route, RoutePolicy, Transmission};
use crate::wire::consts::REQUEST_HEADER_LEN;
use crate::wire::request::{Command, Request};

/// Limits of a [`Server`].
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
    /// `net.ipv4.tcp_congestion_control`). [`Server::serve`] sets it on the listening
    /// socket, so every connection starts with it. Default `cubic`: with BBR (the
    /// default of many distributions) the kernel paces each connection with timers
    /// unless the interface has the `fq` qdisc, which in a 100-client boot storm on
    /// loopback cost this server 3.4x the CPU and twice the time, and reordered
    /// segments across cores. Embedders with their own accept loop call
    /// [`set_congestion_control`] on their listener: switching a connection after it
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

/// Stops a running [`Server`]: no new connections; in-flight requests finish.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Starts the shutdown (idempotent).
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// An NBD server over TCP.
pub struct Server {
    provider: Arc<dyn ExportProvider>,
    config: ServerConfig,
    shutdown: Arc<watch::Sender<bool>>,
}

impl Server {
    /// A server for `provider`'s exports.
    pub fn new(provider: Arc<dyn ExportProvider>, config: ServerConfig) -> Self {
        Self {
            provider,
            config,
            shutdown: Arc::new(watch::channel(false).0),
        }
    }

    /// A handle that stops [`Server::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Accepts and serves connections until shut down; returns when every connection
    /// has ended.
    pub async fn serve(self, listener: TcpListener) -> Result<()> {
        if let Some(name) = self.config.congestion_control
            && rustix::net::sockopt::tcp_congestion(&listener)
                .ok()
                .as_deref()
                != Some(name)
            && let Err(e) = set_congestion_control(&listener, name)
        {
            tracing::warn!(
                congestion_control = name,
                error = %e,
                "cannot use this TCP congestion control; keeping the system's"
            );
        }
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let handshaking = Handshaking::default();
        let mut evictions = Evictions::default();
        let shared = Shared::new(POOL_BYTES, &self.config);
        let mut stop = self.shutdown.subscribe();
        let mut trim = tokio::time::interval(POOL_TRIM_PERIOD);
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = trim.tick() => {
                    shared.pool.trim_idle();
                    continue;
                }
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if handshaking.len() >= self.config.max_handshakes && handshaking.evict_oldest() {
                evictions.note();
            }
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                // Full: a connection still in its handshake makes room for this one.
                Err(_) if handshaking.evict_oldest() => {
                    evictions.note();
                    match tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await {
                        Ok(Ok(slot)) => slot,
                        _ => {
                            tracing::warn!(%peer, "connection limit reached; closing");
                            continue;
                        }
                    }
                }
                Err(_) => {
                    tracing::warn!(%peer, "connection limit reached; closing");
                    continue;
                }
            };
            let place = handshaking.enter();
            let provider = self.provider.clone();
            let config = self.config;
            let stop = self.shutdown.subscribe();
            let shared = shared.clone();
            tokio::spawn(async move {
                match connection(stream, peer, provider, config, stop, shared, Some(place)).await {
                    Ok(()) => tracing::debug!(%peer, "connection closed"),
                    // A peer that just hangs up (a port probe, a client killed) is
                    // routine; anything else is worth an operator's eye.
                    Err(crate::Error::Closed) => tracing::debug!(%peer, "closed by the peer"),
                    // Counted and reported by the accept loop: a crowd would flood the log.
                    Err(crate::Error::Timeout(EVICTED)) => {
                        tracing::debug!(%peer, "handshake ended for newer connections")
                    }
                    Err(e) => tracing::info!(%peer, error = %e, "connection ended"),
                }
                drop(slot);
            });
        }
        drop(listener);
        // Every connection holds one slot: having them all back means all have ended.
        let _all = slots.acquire_many(self.config.max_connections as u32).await;
        Ok(())
    }
}

/// Makes the connections `listener` (a tokio or std TCP listener) accepts from now on
/// use the TCP congestion control `name` (`cubic`, `reno`, `bbr`, ...; see
/// `net.ipv4.tcp_allowed_congestion_control` for what an unprivileged process may
/// choose).
pub fn set_congestion_control(listener: impl AsFd, name: &str) -> std::io::Result<()> {
    use rustix::io::Errno;
    rustix::net::sockopt::set_tcp_congestion(listener, name).map_err(|e| {
        let why = match e {
            Errno::NOENT => "not in this kernel (see net.ipv4.tcp_available_congestion_control)",
            Errno::PERM => "not allowed (see net.ipv4.tcp_allowed_congestion_control)",
            _ => "refused",
        };
        std::io::Error::new(
            std::io::Error::from(e).kind(),
            format!("TCP congestion control {name:?}: {why}: {e}"),
        )
    })
}

/// A listener on `addr` for [`Server::serve`], with `config`'s congestion control set
/// before it listens, so that even a connection that arrives before `serve` starts
/// has it (`serve` reports a congestion control the kernel refuses). Must be called
/// within a tokio runtime.
pub fn listen(addr: SocketAddr, config: &ServerConfig) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // What `TcpListener::bind` does: restart without waiting out TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if let Some(name) = config.congestion_control {
        let _ = set_congestion_control(&socket, name);
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// How long a closing connection may take to send its last replies.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a connection whose handshake was ended for a newer one returns.
const EVICTED: &str = "handshake (ended for newer connections)";

/// Handshakes ended for newer connections, reported at most every 10 s.
#[derive(Default)]
struct Evictions {
    since_report: u64,
    reported_at: Option<Instant>,
}

impl Evictions {
    fn note(&mut self) {
        self.since_report += 1;
        if self
            .reported_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                ended = self.since_report,
                "handshakes ended to make room for newer connections: clients connect and \
                 never finish (a scanner or a flood?)"
            );
            self.since_report = 0;
            self.reported_at = Some(Instant::now());
        }
    }
}

/// How long a new connection waits for the slot of the handshake it ended.
const EVICTION_WAIT: Duration = Duration::from_secs(1);
/// Reply buffers kept for reuse across the whole server.
const POOL_BYTES: usize = 16 << 20;
/// How often an idle reply-buffer pool is emptied.
const POOL_TRIM_PERIOD: Duration = Duration::from_secs(2);
/// Largest reply buffer kept for reuse.
const POOL_MAX_BUFFER: usize = 4 << 20;

/// Serves one accepted connection through handshake and transmission (for embedders
/// with their own accept loop; `stop` becoming true shuts it down cleanly). The
/// connection gets a reply-buffer pool and a memory budget of its own: bounding the
/// number of connections is the embedder's part.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    provider: Arc<dyn ExportProvider>,
    config: ServerConfig,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let shared = Shared::new(config.max_in_flight_bytes.min(POOL_BYTES), &config);
    connection(stream, peer, provider, config, stop, shared, None).await
}

/// What the connections of one server share.
#[derive(Clone)]
struct Shared {
    /// Reply buffers for reuse.
    pool: Arc<BufferPool>,
    /// The server's memory budget (`ServerConfig::max_buffered_bytes`), in bytes.
    memory: Arc<Semaphore>,
    /// The most one request takes from it: all of it.
    largest: u32,
}

impl Shared {
    fn new(pool_bytes: usize, config: &ServerConfig) -> Self {
        let budget = config.max_buffered_bytes.min(Semaphore::MAX_PERMITS);
        Self {
            pool: Arc::new(BufferPool::new(pool_bytes, POOL_MAX_BUFFER)),
            memory: Arc::new(Semaphore::new(budget)),
            largest: u32::try_from(budget).unwrap_or(u32::MAX),
        }
    }

    /// Waits for `len` bytes of the memory budget (at most all of it); `None` when
    /// the server shuts down first.
    async fn reserve(
        &self,
        len: u32,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            permit = self.memory.clone().acquire_many_owned(len.min(self.largest)) => permit.ok(),
            _ = stop.wait_for(|s| *s) => None,
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    provider: Arc<dyn ExportProvider>,
    config: ServerConfig,
    mut stop: watch::Receiver<bool>,
    shared: Shared,
    mut place: Option<Place>,
) -> Result<()> {
    stream.set_nodelay(true)?;
    if let Some(keepalive) = &config.keepalive {
        set_keepalive(&stream, keepalive)?;
    }
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(256);
    let mut hs = Handshake::new(peer, Instant::now(), config.handshake);
    wr.write_all(&hs.take_output()).await?;
    let deadline = tokio::time::Instant::from_std(hs.deadline());
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    let negotiated = 'handshake: loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = tokio::time::sleep_until(deadline) => return Err(Error::Timeout("handshake")),
            Ok(()) = async { (&mut place.as_mut().unwrap().evicted).await }, if place.is_some() => {
                return Err(Error::Timeout(EVICTED));
            }
            n = rd.read_buf(&mut buf) => if n? == 0 { return Err(Error::Closed) },
        }
        loop {
            // Options may open an export (a file, a VHD chain): on a multi-thread
            // runtime, let the other tasks move off this worker meanwhile.
            let (used, progress) = if multi_thread {
                tokio::task::block_in_place(|| hs.handle_input(&buf, &*provider))?
            } else {
                hs.handle_input(&buf, &*provider)?
            };
            buf.advance(used);
            let out = hs.take_output();
            if !out.is_empty() {
                wr.write_all(&out).await?;
            }
            match progress {
                Progress::NeedMore if used > 0 => continue,
                Progress::NeedMore => break,
                Progress::Close => return Ok(()),
                Progress::Transmission(neg) => break 'handshake neg,
            }
        }
    };
    drop(place);
    tracing::info!(%peer, export = %negotiated.name, size = negotiated.size,
        structured = negotiated.structured, "transmission");
    let session = Arc::new(Transmission::new(*negotiated));
    transmission(rd, wr, buf, session, config, stop, shared).await
}

/// A reply on its way to the writer task, with the room it holds until it is sent: its
/// share of the connection's in-flight bytes and requests, and of the server's memory
/// when its data sits in a buffer.
struct Reply {
    body: Body,
    permits: [OwnedSemaphorePermit; 2],
    memory: Option<OwnedSemaphorePermit>,
}

enum Body {
    /// The whole reply.
    Bytes(Vec<u8>),
    /// A READ reply planned for zero-copy sending.
    Parts(Vec<Located>),
}

async fn transmission(
    mut rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    mut buf: BytesMut,
    session: Arc<Transmission>,
    config: ServerConfig,
    mut stop: watch::Receiver<bool>,
    shared: Shared,
) -> Result<()> {
    let pool = &shared.pool;
    let (tx, rx) = mpsc::unbounded_channel::<Reply>();
    let mut busy_poll = BusyPoll::new(config.busy_poll);
    let policy = RoutePolicy {
        zero_copy: config.zero_copy,
        zero_copy_min: ZERO_COPY_MIN,
        inline_max_len: config.inline_max_len,
    };
    let writer = tokio::spawn(write_replies(wr, rx, pool.clone(), config.request_timeout));
    let bytes = Arc::new(Semaphore::new(config.max_in_flight_bytes));
    let count = Arc::new(Semaphore::new(config.max_in_flight_requests));
    let nothing_in_flight = || count.available_permits() == config.max_in_flight_requests;
    let mut ended = session
        .negotiated()
        .export
        .end_signal()
        .unwrap_or_default()
        .ended();
    let idle_timeout = config.idle_timeout.unwrap_or(Duration::MAX);
    let result = loop {
        let req = loop {
            match session.decode(&buf) {
                Ok(Some(req)) => break Ok(Some(req)),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            buf.reserve(REQUEST_HEADER_LEN * 32);
            if buf.is_empty()
                && let Some(poller) = busy_poll.as_mut()
                && poller.rhythm.may_spin()
            {
                // Let the writer send the reply the client waits for, then watch for
                // the client's next request.
                tokio::task::yield_now().await;
                if nothing_in_flight() && poller.spin(rd.as_ref(), &mut buf) {
                    continue;
                }
            }
            // Part of a header already here: the rest must follow within the timeout
            // (restarted by every read that brings bytes).
            let partial = !buf.is_empty();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break Ok(None),
                // The export's session ended (its device booted again): requests in
                // flight finish, then the connection closes.
                () = &mut ended => {
                    tracing::info!("the export's session ended; closing the connection");
                    break Ok(None);
                }
                // Idle: no request for that long, and none in flight (checked when the
                // time is up: replies may still have been on their way before).
                _ = tokio::time::sleep(idle_timeout), if config.idle_timeout.is_some() && !partial => {
                    if nothing_in_flight() {
                        break Err(Error::Timeout("idle connection"));
                    }
                }
                // The writer gave up (the client left its replies unread): its error
                // is the connection's.
                () = tx.closed() => break Err(Error::Closed),
                _ = tokio::time::sleep(config.request_timeout), if partial => {
                    break Err(Error::Timeout("the rest of a request header"));
                }
                n = rd.read_buf(&mut buf) => match n {
                    Ok(0) => break Err(Error::Closed),
                    Ok(_) => {}
                    Err(e) => break Err(e.into()),
                },
            }
        };
        let req = match req {
            Ok(Some(r)) => r,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        buf.advance(REQUEST_HEADER_LEN);
        if let Some(poller) = busy_poll.as_mut() {
            poller.rhythm.request(nothing_in_flight());
        }
        if req.command == Command::Disc {
            break Ok(());
        }
        // Wait for room before reading the payload or queueing the read.
        let cost = match req.command {
            Command::Read | Command::Write => (req.length as usize).min(config.max_in_flight_bytes),
            _ => 0,
        } as u32;
        let Ok(byte_permit) = bytes.clone().acquire_many_owned(cost).await else {
            break Ok(());
        };
        let Ok(count_permit) = count.clone().acquire_owned().await else {
            break Ok(());
        };
        // A WRITE's payload is in memory from the moment it is read.
        let mut memory = None;
        if req.command == Command::Write {
            let Some(permit) = shared.reserve(cost, &mut stop).await else {
                break Ok(());
            };
            memory = Some(permit);
        }
        let len = req.payload_len();
        let payload = match read_payload(&mut rd, &mut buf, len, &config, &mut stop).await {
            Ok(Some(p)) => p,
            // Shutting down: the half-received WRITE is dropped, never applied.
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let permits = [byte_permit, count_permit];
        // The session decides the route (one check, at most one locate); this task
        // only follows it.
        let route = session.route(&req, &policy, cached);
        // The reply's data will sit in a buffer.
        if route.buffers_read(&req) {
            let Some(permit) = shared.reserve(cost, &mut stop).await else {
                break Ok(());
            };
            memory = Some(permit);
        }
        let (job, blocking) = match route {
            Route::Disconnect => break Ok(()),
            Route::ZeroCopy(parts) => {
                let body = Body::Parts(parts);
                let _ = tx.send(Reply {
                    body,
                    permits,
                    memory,
                });
                continue;
            }
            Route::Reject(errno) => (Job::Reject(errno), false),
            Route::Gather { parts, blocking } => (Job::Gather(parts), blocking),
            Route::Execute { op, blocking } => (Job::Execute(op, payload), blocking),
        };
        if !blocking {
            let body = Body::Bytes(job.run(&session, pool, &req));
            let _ = tx.send(Reply {
                body,
                permits,
                memory,
            });
            continue;
        }
        let (session, tx, pool) = (session.clone(), tx.clone(), pool.clone());
        tokio::task::spawn_blocking(move || {
            let body = Body::Bytes(job.run(&session, &pool, &req));
            let _ = tx.send(Reply {
                body,
                permits,
                memory,
            });
        });
    };
    // Let in-flight requests finish and their replies go out, then close. A client that
    // stopped reading gets DRAIN_TIMEOUT, so shutdown can never hang on it.
    drop(tx);
    let mut writer = writer;
    let written = match tokio::time::timeout(DRAIN_TIMEOUT, &mut writer).await {
        Ok(joined) => joined.unwrap_or(Ok(())),
        Err(_) => {
            writer.abort();
            Err(Error::Timeout("sending the last replies"))
        }
    };
    match result {
        Err(Error::Closed) => written,
        other => other.and(written),
    }
}

/// READs from this length up are sent with `sendfile(2)` when the export locates them.
const ZERO_COPY_MIN: u32 = 16 << 10;

/// What builds a reply in a buffer, on the connection's task or a blocking thread.
enum Job {
    Reject(Errno),
    Gather(Vec<Located>),
    Execute(Op, Vec<u8>),
}

impl Job {
    /// The reply, in a pooled buffer.
    fn run(self, session: &Transmission, pool: &BufferPool, req: &Request) -> Vec<u8> {
        match self {
            Job::Reject(errno) => session.error_reply(req, errno, None),
            Job::Gather(parts) => {
                let mut reply = pool.take(req.length as usize + 64);
                session.gather_into(req, parts, &mut reply);
                reply
            }
            Job::Execute(op, payload) => {
                let want = match req.command {
                    Command::Read => req.length as usize + 64,
                    _ => 64,
                };
                let mut reply = pool.take(want);
                session.execute_op(req, op, &payload, &mut reply);
                drop(payload);
                reply
            }
        }
    }
}

/// True unless the part is a file run not wholly in the page cache (sending it would
/// wait for the disk on an async worker).
fn cached(part: &Located) -> bool {
    match part {
        Located::File { file, offset, len } => zero_copy::resident(file, *offset, *len),
        _ => true,
    }
}

/// Reads a WRITE payload: what is already buffered, then straight from the socket into
/// the payload vector (no second copy). `None` when the server shuts down meanwhile.
///
/// The vector's capacity is reserved but not filled in advance, so its pages are touched
/// only as bytes arrive: a client that announces a large WRITE and stalls costs the
/// server what it sent, not what it announced, and only until `request_timeout`.
async fn read_payload(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    len: usize,
    config: &ServerConfig,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Vec<u8>>> {
    if len == 0 {
        return Ok(Some(Vec::new()));
    }
    let have = buf.len().min(len);
    let mut payload = Vec::with_capacity(len);
    payload.extend_from_slice(&buf[..have]);
    buf.advance(have);
    while payload.len() < len {
        let want = len - payload.len();
        let mut room = (&mut payload).limit(want);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(None),
            _ = tokio::time::sleep(config.request_timeout) => {
                return Err(Error::Timeout("the rest of a WRITE payload"));
            }
            n = rd.read_buf(&mut room) => if n? == 0 { return Err(Error::Closed) },
        }
    }
    Ok(Some(payload))
}

/// The connection's sending side: small replies gathered into one buffer and sent
/// together, file runs sent with `sendfile(2)` behind their header.
struct Sender {
    wr: OwnedWriteHalf,
    buf: Vec<u8>,
    /// How long the client may leave replies unread before the connection ends.
    stall: Duration,
}

/// Bytes gathered before they are sent.
const SEND_BUFFER: usize = 64 << 10;

static ZEROS: [u8; SEND_BUFFER] = [0; SEND_BUFFER];

impl Sender {
    async fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        if self.buf.len() + bytes.len() > SEND_BUFFER {
            self.flush(false).await?;
        }
        if bytes.len() >= SEND_BUFFER {
            zero_copy::send_all(self.wr.as_ref(), bytes, false, self.stall).await?;
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    async fn part(&mut self, part: Located) -> Result<()> {
        match part {
            Located::Bytes(b) => self.bytes(&b).await,
            Located::Zeros(mut n) => {
                while n > 0 {
                    let k = n.min(SEND_BUFFER as u64);
                    self.bytes(&ZEROS[..k as usize]).await?;
                    n -= k;
                }
                Ok(())
            }
            Located::File { file, offset, len } => {
                self.flush(true).await?;
                Ok(zero_copy::send_file(self.wr.as_ref(), &file, offset, len, self.stall).await?)
            }
        }
    }

    /// Sends what is gathered; `more` when more bytes follow at once.
    async fn flush(&mut self, more: bool) -> Result<()> {
        if !self.buf.is_empty() {
            zero_copy::send_all(self.wr.as_ref(), &self.buf, more, self.stall).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

async fn write_replies(
    wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Reply>,
    pool: Arc<BufferPool>,
    stall: Duration,
) -> Result<()> {
    let mut out = Sender {
        wr,
        buf: Vec::new(),
        stall,
    };
    while let Some(first) = rx.recv().await {
        // Batch replies that are ready; send when the queue is empty.
        out.buf = pool.take(SEND_BUFFER);
        out.buf.clear();
        let mut next = Some(first);
        while let Some(reply) = next {
            match reply.body {
                Body::Bytes(bytes) => {
                    out.bytes(&bytes).await?;
                    pool.give(bytes);
                }
                Body::Parts(parts) => {
                    for part in parts {
                        out.part(part).await?;
                    }
                }
            }
            drop((reply.permits, reply.memory));
            next = rx.try_recv().ok();
        }
        out.flush(false).await?;
        // An idle connection keeps no buffer.
        pool.give(std::mem::take(&mut out.buf));
    }
    out.wr.shutdown().await.ok();
    Ok(())
}
