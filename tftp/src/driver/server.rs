//! The tokio UDP server (feature `server`): receives requests on one socket, runs each
//! transfer as a task, and moves datagrams between sockets and the sans-IO transfers.
//!
//! By default every transfer gets its own socket, i.e. a new server TID (RFC 1350 §4);
//! in single-port mode every transfer shares the listening socket, and datagrams are
//! routed to transfers by the client's address and port. A packet from the wrong TID is
//! answered with ERROR 5 and does not disturb the transfer (RFC 1350 §4). A request
//! repeated by a client (same address and port) while its transfer runs is handed to that
//! transfer instead of starting a second one. The number of concurrent transfers is
//! bounded, in total and per client IP address; beyond either bound requests get ERROR 0.
//! Retransmissions are bounded by the transfers' retry limit, and a windowed transfer only
//! starts after the client's ACK 0, so a spoofed request draws little (SPECS §3.5).
//! Requests sent to a broadcast address cannot be told apart here (no `IP_PKTINFO`):
//! bind to a unicast address to stay silent to them (RFC 1123 §4.2.3.5).
//!
//! Each packet's parsing and handling runs under `catch_unwind`: a panic there (a bug
//! tripped by one packet, or in a provider's [`Source`](crate::Source)) is logged at
//! ERROR with the peer and counted ([`Server::panics`]). On the listener the packet is
//! dropped; in a transfer, whose state the panic may have left half-updated, the
//! transfer ends with ERROR 0 to the client. The server keeps serving.
//!
//! Limitation: replies leave from the listening address; on a multi-homed host bind to the
//! boot interface's address rather than the wildcard so replies carry the address the
//! client sent to.

use std::collections::HashMap;
use std::fmt::Display;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};

use super::batch::Batch;
use super::busy_poll::{BusyPoll, Gate};
use crate::error::{Error, ErrorCode};
use crate::packet::{DATA_HEADER_LEN, MAX_BLKSIZE, Packet, Request};
use crate::provider::Provider;
use crate::transfer::{Outcome, ReadTransfer, TransferConfig, WriteTransfer};

/// Room for the largest datagram a transfer sends or accepts.
const DATAGRAM_BUF: usize = MAX_BLKSIZE + 64;
/// Datagrams queued for one transfer by the listener before extra ones are dropped.
const QUEUE_DEPTH: usize = 256;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Timing and option limits of every transfer.
    pub transfer: TransferConfig,
    /// Serve every transfer from the listening port (for firewalls that only open 69).
    pub single_port: bool,
    /// Accept write requests (the provider must accept them too).
    pub allow_write: bool,
    /// Transfers served at once; further requests get ERROR 0 "Server busy".
    pub max_transfers: usize,
    /// Transfers served at once to one IP address (limits what a spoofed source can
    /// draw, SPECS §3.5); further requests from it get ERROR 0.
    pub max_transfers_per_client: usize,
    /// How long a transfer polls its socket for the client's answer before it sleeps
    /// (zero: never). Saves a thread wake-up per lock-step block; bounded to one
    /// spinning transfer per spare core, and backs off for clients slower than this
    /// (see `driver::busy_poll`). Not used in single-port mode.
    pub busy_poll: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            transfer: TransferConfig::default(),
            single_port: false,
            allow_write: false,
            max_transfers: 1024,
            max_transfers_per_client: 128,
            busy_poll: Duration::from_micros(50),
        }
    }
}

/// The transfers the listener routes datagrams to, by client address.
type Routes = Arc<Mutex<HashMap<SocketAddr, Route>>>;

/// Where the listener sends a client's datagrams: one running transfer.
#[derive(Debug, Clone)]
struct Route {
    /// Tells this transfer apart from a later one of the same client.
    id: u64,
    /// The requested file, to recognise a repeated request.
    filename: String,
    tx: mpsc::Sender<Vec<u8>>,
}

/// A TFTP server bound to a UDP address, serving one [`Provider`].
#[derive(Debug)]
pub struct Server<P> {
    socket: Arc<UdpSocket>,
    provider: Arc<P>,
    config: Arc<ServerConfig>,
    spinners: Arc<Gate>,
    panics: Arc<AtomicU64>,
}

impl<P: Provider + 'static> Server<P> {
    /// Binds the listening socket (IPv4 or IPv6).
    ///
    /// # Errors
    ///
    /// The bind error (port 69 needs root or `CAP_NET_BIND_SERVICE`).
    pub async fn bind(addr: SocketAddr, provider: P, config: ServerConfig) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        Ok(Self {
            socket: Arc::new(socket),
            provider: Arc::new(provider),
            config: Arc::new(config),
            spinners: Gate::per_spare_core(),
            panics: Arc::default(),
        })
    }

    /// Packets whose handling panicked (a bug; each is logged at ERROR): the counter
    /// keeps counting while [`Server::run`] serves.
    pub fn panics(&self) -> Arc<AtomicU64> {
        self.panics.clone()
    }

    /// The address the server listens on.
    ///
    /// # Errors
    ///
    /// The socket's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves requests until the task is dropped or the socket fails.
    ///
    /// # Errors
    ///
    /// A receive error on the listening socket other than a transient one.
    pub async fn run(self) -> io::Result<()> {
        let routes: Routes = Arc::default();
        let permits = Arc::new(Semaphore::new(self.config.max_transfers.max(1)));
        let per_client: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
        let mut buf = vec![0u8; DATAGRAM_BUF];
        let mut next_id = 0u64;
        loop {
            let (n, peer) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(e),
            };
            let bytes = &buf[..n];
            let Some(parsed) = contain(&self.panics, peer, || Packet::parse(bytes)) else {
                continue;
            };
            let route = routes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&peer)
                .cloned();
            if let Some(route) = route {
                let repeat = match &parsed {
                    Ok(Packet::Rrq(r) | Packet::Wrq(r)) => r.filename == route.filename,
                    _ => false,
                };
                let is_request = matches!(parsed, Ok(Packet::Rrq(_) | Packet::Wrq(_)));
                if repeat || (self.config.single_port && !is_request) {
                    // A repeated request (SPECS §3.2: never a second stream), or in
                    // single-port mode any packet of the running transfer.
                    let _ = route.tx.try_send(bytes.to_vec());
                    continue;
                }
                // A new request from the same port replaces the old transfer (dropping
                // its route ends it in single-port mode); other packets fall through.
            }
            let (request, write) = match parsed {
                Ok(Packet::Rrq(r)) => (r, false),
                Ok(Packet::Wrq(r)) => (r, true),
                Ok(Packet::Error { .. }) => continue, // never answer an error
                Ok(Packet::Data { .. } | Packet::Ack(_) | Packet::Oack(_)) => {
                    self.refuse(peer, ErrorCode::UnknownTid, "Unknown transfer ID")
                        .await;
                    continue;
                }
                Ok(Packet::Unknown { opcode, .. }) => {
                    tracing::debug!(%peer, opcode, "unknown opcode");
                    self.refuse(peer, ErrorCode::IllegalOperation, "Illegal TFTP operation")
                        .await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "bad request");
                    self.refuse(peer, ErrorCode::IllegalOperation, "Illegal TFTP operation")
                        .await;
                    continue;
                }
            };
            if write && !self.config.allow_write {
                self.refuse(peer, ErrorCode::AccessViolation, "Uploads are not allowed")
                    .await;
                continue;
            }
            let admitted = {
                let mut counts = per_client.lock().unwrap_or_else(|p| p.into_inner());
                let count = counts.entry(peer.ip()).or_default();
                let room = *count < self.config.max_transfers_per_client.max(1);
                if room {
                    *count += 1;
                }
                room
            };
            if !admitted {
                tracing::warn!(%peer, "too many transfers for this client; refusing");
                let message = "Too many transfers from this client";
                self.refuse(peer, ErrorCode::NotDefined, message).await;
                continue;
            }
            let release = ClientSlot {
                counts: per_client.clone(),
                ip: peer.ip(),
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many transfers; refusing");
                self.refuse(peer, ErrorCode::NotDefined, "Server busy")
                    .await;
                continue;
            };
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            next_id += 1;
            let id = next_id;
            let route = Route {
                id,
                filename: request.filename.clone(),
                tx,
            };
            routes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(peer, route);
            let job = Job {
                peer,
                request,
                write,
                listener: self.socket.clone(),
                provider: self.provider.clone(),
                config: self.config.clone(),
                spinners: self.spinners.clone(),
                panics: self.panics.clone(),
                rx,
            };
            // Given back when the task ends, even by a panic: a route left behind
            // would swallow the client's repeated requests.
            let route = RouteSlot {
                routes: routes.clone(),
                peer,
                id,
            };
            tokio::spawn(async move {
                job.serve().await;
                drop(route);
                drop(permit);
                drop(release);
            });
        }
    }

    async fn refuse(&self, peer: SocketAddr, code: ErrorCode, message: &str) {
        let packet = Packet::Error {
            code,
            message: message.into(),
        }
        .to_vec();
        let _ = self.socket.send_to(&packet, peer).await;
    }
}

/// Runs `step`, the I/O-free handling of one packet from `peer`. A panic in it is
/// caught, logged at ERROR with the peer and counted in `panics`; `None` then.
fn contain<T>(panics: &AtomicU64, peer: impl Display, step: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(step)) {
        Ok(done) => Some(done),
        Err(payload) => {
            panics.fetch_add(1, Ordering::Relaxed);
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            tracing::error!(%peer, panic = what, "handling a packet panicked");
            None
        }
    }
}

/// The error of a transfer that ends because `during` panicked (sent as ERROR 0).
fn panicked(during: &str) -> Error {
    Error::io(during, io::Error::other("panicked"))
}

/// One transfer's route, removed when dropped unless a newer transfer replaced it.
struct RouteSlot {
    routes: Routes,
    peer: SocketAddr,
    id: u64,
}

impl Drop for RouteSlot {
    fn drop(&mut self) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if routes.get(&self.peer).is_some_and(|r| r.id == self.id) {
            routes.remove(&self.peer);
        }
    }
}

/// One transfer's place in the per-client count, given back when dropped.
struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Errors on a UDP socket that say nothing about the socket itself (ICMP feedback).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error().is_some_and(|c| c == 113 || c == 101) // EHOSTUNREACH, ENETUNREACH
}

/// The surface the driver needs from a sans-IO transfer.
trait Session {
    fn handle_datagram(&mut self, now: Instant, bytes: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn outcome(&self) -> Option<&Outcome>;
    fn take_outcome(&mut self) -> Option<Outcome>;
    /// DATA packets sent and how many were retransmissions (0 for uploads).
    fn stats(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Room `poll_transmit` needs for any datagram it may write.
    fn datagram_room(&self) -> usize {
        DATAGRAM_BUF
    }
}

macro_rules! session {
    ($t:ty) => {
        session!($t, {});
    };
    ($t:ty, { $($extra:tt)* }) => {
        impl Session for $t {
            fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
                <$t>::handle_datagram(self, now, bytes)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
                <$t>::poll_transmit(self, buf)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn outcome(&self) -> Option<&Outcome> {
                <$t>::outcome(self)
            }
            fn take_outcome(&mut self) -> Option<Outcome> {
                <$t>::take_outcome(self)
            }
            $($extra)*
        }
    };
}
session!(ReadTransfer, {
    fn stats(&self) -> (u64, u64) {
        ReadTransfer::stats(self)
    }
    fn datagram_room(&self) -> usize {
        // A DATA packet, or a (short) OACK or ERROR.
        (DATA_HEADER_LEN + self.blksize()).max(1024)
    }
});
session!(WriteTransfer);

/// A transfer whose every call runs under [`contain`]. After a panic its state is
/// unknown, so it is not called again: the transfer sends ERROR 0 and ends.
struct Contained {
    inner: Box<dyn Session + Send>,
    peer: SocketAddr,
    panics: Arc<AtomicU64>,
    /// Set by a panic; the ERROR is still due while the flag is true.
    broken: Option<(Outcome, bool)>,
}

impl Contained {
    fn call<T>(&mut self, f: impl FnOnce(&mut dyn Session) -> T) -> Option<T> {
        if self.broken.is_some() {
            return None;
        }
        let inner = &mut *self.inner;
        let done = contain(&self.panics, self.peer, || f(inner));
        if done.is_none() {
            self.broken = Some((Outcome::Failed(panicked("handling a packet")), true));
        }
        done
    }
}

impl Session for Contained {
    fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.call(|s| s.handle_datagram(now, bytes));
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.call(|s| s.handle_timeout(now));
    }
    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        if let Some(sent) = self.call(|s| s.poll_transmit(buf)) {
            return sent;
        }
        // Broken, perhaps by this very call: the ERROR goes out now, once.
        let Some((_, due @ true)) = &mut self.broken else {
            return None;
        };
        *due = false;
        let error = Packet::Error {
            code: ErrorCode::NotDefined,
            message: "Internal error".into(),
        };
        error.emit(buf).ok()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        // Only reads the deadline the last contained call set; nothing to contain.
        match self.broken {
            Some(_) => None,
            None => self.inner.poll_timeout(),
        }
    }
    fn outcome(&self) -> Option<&Outcome> {
        match &self.broken {
            Some((outcome, false)) => Some(outcome),
            Some((_, true)) => None,
            None => self.inner.outcome(),
        }
    }
    fn take_outcome(&mut self) -> Option<Outcome> {
        match self.broken.take() {
            Some((outcome, false)) => Some(outcome),
            Some(due) => {
                self.broken = Some(due);
                None
            }
            None => self.inner.take_outcome(),
        }
    }
    fn stats(&self) -> (u64, u64) {
        self.inner.stats()
    }
    fn datagram_room(&self) -> usize {
        self.inner.datagram_room()
    }
}

/// One transfer's task.
struct Job<P> {
    peer: SocketAddr,
    request: Request,
    write: bool,
    listener: Arc<UdpSocket>,
    provider: Arc<P>,
    config: Arc<ServerConfig>,
    spinners: Arc<Gate>,
    panics: Arc<AtomicU64>,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl<P: Provider + 'static> Job<P> {
    async fn serve(mut self) {
        let socket = if self.config.single_port {
            self.listener.clone()
        } else {
            let local = match self.listener.local_addr() {
                Ok(a) => SocketAddr::new(a.ip(), 0),
                Err(e) => return tracing::warn!(error = %e, "no local address"),
            };
            match UdpSocket::bind(local).await {
                Ok(s) => Arc::new(s),
                Err(e) => return tracing::warn!(error = %e, "cannot bind a transfer socket"),
            }
        };
        let started = Instant::now();
        let session = match self.start().await {
            Ok(s) => s,
            Err(e) => {
                let (code, message) = e.to_wire();
                tracing::info!(peer = %self.peer, file = %self.request.filename, %code, %message, "refused");
                let packet = Packet::Error { code, message }.to_vec();
                let _ = socket.send_to(&packet, self.peer).await;
                return;
            }
        };
        let session = Box::new(Contained {
            inner: session,
            peer: self.peer,
            panics: self.panics.clone(),
            broken: None,
        });
        let (outcome, (blocks, resent)) = self.pump(&socket, session).await;
        let ms = started.elapsed().as_millis() as u64;
        let (peer, file) = (self.peer, &self.request.filename);
        match outcome {
            Outcome::Completed => {
                tracing::info!(%peer, %file, write = self.write, ms, blocks, resent, "transfer complete")
            }
            Outcome::Declined => tracing::debug!(%peer, %file, "size probe ended by the client"),
            Outcome::Failed(e) => {
                tracing::info!(%peer, %file, error = %e, blocks, resent, "transfer failed")
            }
        }
    }

    /// Opens the file (on a blocking thread) and builds the transfer.
    async fn start(&self) -> Result<Box<dyn Session + Send>, Error> {
        let provider = self.provider.clone();
        let (path, peer, write) = (self.request.filename.clone(), self.peer, self.write);
        // Option values outside their RFC's range are refused (ERROR 8) before any file
        // is opened; a WRQ's tsize tells the provider the upload's size.
        let options = || crate::Options::from_request(&self.request.options);
        let size = contain(&self.panics, peer, options)
            .unwrap_or_else(|| Err(panicked("reading the options")))?
            .tsize;
        let now = Instant::now();
        let cfg = &self.config.transfer;
        let joined = tokio::task::spawn_blocking(move || {
            if write {
                provider.create(&path, peer, size).map(Opened::Sink)
            } else {
                provider.open(&path, peer).map(Opened::Source)
            }
        })
        .await
        .map_err(|e| {
            if e.is_panic() {
                self.panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%peer, file = %self.request.filename, "opening the file panicked");
            }
            Error::io("opening a file", io::Error::other(e))
        })?;
        let opened = joined?;
        let build = || -> Result<Box<dyn Session + Send>, Error> {
            Ok(match opened {
                Opened::Source(s) => Box::new(ReadTransfer::new(now, &self.request, s, cfg)?),
                Opened::Sink(s) => Box::new(WriteTransfer::new(now, &self.request, s, cfg)?),
            })
        };
        contain(&self.panics, peer, build).unwrap_or_else(|| Err(panicked("starting the transfer")))
    }

    /// Moves datagrams until the transfer ends.
    async fn pump(
        &mut self,
        socket: &UdpSocket,
        mut session: Box<dyn Session + Send>,
    ) -> (Outcome, (u64, u64)) {
        let own_socket = !self.config.single_port;
        let mut busy_poll = own_socket
            .then(|| BusyPoll::new(self.config.busy_poll, self.spinners.clone()))
            .flatten();
        let mut out = vec![0u8; DATAGRAM_BUF];
        let mut inbuf = vec![0u8; DATAGRAM_BUF];
        // One timer, moved only when the transfer's deadline comes earlier than the one
        // it is set to. A lock-step transfer pushes its deadline later with every ACK:
        // the timer then fires early once per timeout period and is set again, instead
        // of being moved in tokio's timer wheel for every block.
        let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        let mut batch = Batch::default();
        loop {
            // What is due (a window) leaves in as few system calls as it fits in.
            let room = session.datagram_room();
            while batch.gather(&mut out, room, |buf| session.poll_transmit(buf)) > 0 {
                if let Err(e) = batch.send(socket, self.peer, &out, transient).await {
                    return (Outcome::Failed(Error::io("sending", e)), session.stats());
                }
            }
            if session.outcome().is_some() {
                break;
            }
            let deadline = session.poll_timeout();
            if deadline.is_some_and(|d| armed.is_none_or(|a| d < a)) {
                armed = deadline;
                sleep.as_mut().reset(deadline.map_or_else(far, Into::into));
            }
            let spun = busy_poll.as_mut().and_then(|b| b.poll(socket, &mut inbuf));
            let event = match spun {
                Some(r) => Event::Socket(r),
                None => tokio::select! {
                    r = socket.recv_from(&mut inbuf), if own_socket => Event::Socket(r),
                    m = self.rx.recv() => Event::Routed(m),
                    () = &mut sleep => Event::Timeout,
                },
            };
            match event {
                Event::Socket(Ok((n, from))) if from == self.peer => {
                    session.handle_datagram(Instant::now(), &inbuf[..n]);
                }
                Event::Socket(Ok((_, from))) => {
                    let p = Packet::Error {
                        code: ErrorCode::UnknownTid,
                        message: "Unknown transfer ID".into(),
                    };
                    let _ = socket.send_to(&p.to_vec(), from).await;
                }
                Event::Socket(Err(e)) if transient(&e) => {}
                Event::Socket(Err(e)) => {
                    return (Outcome::Failed(Error::io("receiving", e)), session.stats());
                }
                Event::Routed(Some(bytes)) => session.handle_datagram(Instant::now(), &bytes),
                Event::Routed(None) => {
                    let e = Error::io("routing", io::Error::other("listener stopped"));
                    return (Outcome::Failed(e), session.stats());
                }
                Event::Timeout => {
                    armed = None;
                    let now = Instant::now();
                    // Fired for a deadline the transfer has moved on from: set again
                    // (at the top of the loop) for the one it has now.
                    if session.poll_timeout().is_some_and(|d| d <= now) {
                        session.handle_timeout(now);
                    } else {
                        sleep.as_mut().reset(far());
                    }
                }
            }
        }
        let stats = session.stats();
        (session.take_outcome().unwrap_or(Outcome::Completed), stats)
    }
}

/// What woke a transfer's pump.
enum Event {
    Socket(io::Result<(usize, SocketAddr)>),
    Routed(Option<Vec<u8>>),
    Timeout,
}

enum Opened {
    Source(Arc<dyn crate::Source>),
    Sink(Box<dyn crate::Sink>),
}
