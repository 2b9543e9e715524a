//! One connection: its handshake, then the transmission loop that reads requests,
//! follows the route the session decides for each (see
//! [`Transmission::route`](crate::server::transmission::Transmission::route)): runs it
//! on this task or on tokio's blocking pool, or hands its parts straight to the
//! writer; and the bounds on what a connection holds (bytes and requests in flight,
//! the server's memory budget, timeouts).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::writer::{Body, Reply, write_replies};
use super::{ServerConfig, set_keepalive};
use crate::driver::busy_poll::BusyPoll;
use crate::driver::handshaking::Place;
use crate::driver::pool::BufferPool;
use crate::driver::zero_copy;
use crate::error::{Error, Result};
use crate::export::{Errno, ExportProvider, Located};
use crate::server::handshake::{Handshake, Progress};
use crate::server::transmission::{Op, Route, RoutePolicy, Transmission};
use crate::wire::consts::REQUEST_HEADER_LEN;
use crate::wire::request::{Command, Request};

/// How long a closing connection may take to send its last replies.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a connection whose handshake was ended for a newer one returns.
pub(super) const EVICTED: &str = "handshake (ended for newer connections)";

/// Reply buffers kept for reuse across the whole server.
pub(super) const POOL_BYTES: usize = 16 << 20;
/// How often an idle reply-buffer pool is emptied.
pub(super) const POOL_TRIM_PERIOD: Duration = Duration::from_secs(2);
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
pub(super) struct Shared {
    /// Reply buffers for reuse.
    pub(super) pool: Arc<BufferPool>,
    /// The server's memory budget (`ServerConfig::max_buffered_bytes`), in bytes.
    memory: Arc<Semaphore>,
    /// The most one request takes from it: all of it.
    largest: u32,
}

impl Shared {
    pub(super) fn new(pool_bytes: usize, config: &ServerConfig) -> Self {
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

pub(super) async fn connection(
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
