//! The tokio driver (feature `server`): a listener that serves one [`Target`] and a
//! task per connection that moves bytes between its socket and a [`Connection`].
//!
//! Bounds per connection: the login must finish within [`ServerConfig::login_timeout`];
//! a connection in full feature phase that sends nothing for
//! [`ServerConfig::idle_timeout`] (if set) is closed; the session holds at most one
//! PDU of partial input (its data segment capped by our MaxRecvDataSegmentLength), the
//! data of one write being solicited by R2T (at most 8 MiB) plus the unsolicited bursts
//! (FirstBurstLength each) of the commands in the CmdSN window. Bounds per server:
//! [`ServerConfig::max_connections`] (a newcomer past it is closed at once).
//!
//! SCSI commands run on the connection's task inside `block_in_place`, so a slow disk
//! holds that worker thread but not the others (a multi-threaded runtime is required).

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::session::{Connection, EndFuture, Event, Target};

/// The driver's limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Time a connection may take from accept to the end of its login.
    pub login_timeout: Duration,
    /// Close a logged-in connection that sends nothing for this long (`None`: never;
    /// initiators send NOP-Outs when they care).
    pub idle_timeout: Option<Duration>,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            login_timeout: Duration::from_secs(30),
            idle_timeout: None,
            max_connections: 1024,
        }
    }
}

/// Random bytes for a CHAP challenge, from the standard library's randomly keyed hasher
/// (keys from the operating system's random source), mixed with the time.
fn challenge_seed() -> [u8; 16] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let a = RandomState::new().hash_one(now);
    let b = RandomState::new().hash_one(a);
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&a.to_le_bytes());
    s[8..].copy_from_slice(&b.to_le_bytes());
    s
}

/// The TargetAddress of a portal (`host:port,1`, IPv6 in brackets).
pub fn portal(addr: SocketAddr) -> String {
    format!("{addr},1")
}

/// Accepts connections on `listener` and serves `target` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    target: Arc<Target>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections: closed");
            continue;
        };
        let target = target.clone();
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, target, &config).await {
                tracing::debug!(%peer, error = %e, "iSCSI connection ended");
            }
            drop(permit);
        });
    }
}

/// Serves one connection until logout, error or end of stream.
pub async fn connection(
    mut stream: TcpStream,
    target: Arc<Target>,
    config: &ServerConfig,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr()?;
    let mut conn = Connection::new(target, challenge_seed());
    if let Ok(local) = stream.local_addr() {
        conn.set_portal(portal(local));
    }
    let deadline = tokio::time::Instant::now() + config.login_timeout;
    let mut input = vec![0u8; 256 * 1024];
    let mut output = Vec::new();
    // Completes when the session the login was granted ends (its device booted again).
    let mut ended: Option<EndFuture> = None;
    loop {
        let read = stream.read(&mut input);
        let read = async {
            match ended.as_mut() {
                Some(end) => tokio::select! {
                    r = read => Ok(Some(r)),
                    () = end => Ok::<_, io::Error>(None),
                },
                None => Ok(Some(read.await)),
            }
        };
        let read = async {
            match read.await? {
                Some(r) => r,
                None => Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the session ended (its device booted again)",
                )),
            }
        };
        let n = if conn.is_logging_in() {
            match tokio::time::timeout_at(deadline, read).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "login took too long",
                    ));
                }
            }
        } else if let Some(idle) = config.idle_timeout {
            match tokio::time::timeout(idle, read).await {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "idle")),
            }
        } else {
            read.await?
        };
        if n == 0 {
            return Ok(());
        }
        let result = tokio::task::block_in_place(|| conn.handle_input(&input[..n]));
        while let Some(event) = conn.poll_event() {
            match event {
                Event::LoggedIn {
                    initiator,
                    session_type,
                    tsih,
                } => {
                    let grant = conn.grant();
                    let label = grant.map(|g| g.label.as_str()).unwrap_or_default();
                    tracing::info!(%peer, %initiator, ?session_type, tsih, granted = label, "iSCSI login");
                    ended = grant.and_then(|g| g.lease.as_ref()).map(|l| l.ended());
                }
                Event::LoginFailed { class, detail } => {
                    tracing::info!(%peer, class, detail, "iSCSI login refused")
                }
                Event::LoggedOut => tracing::debug!(%peer, "iSCSI logout"),
            }
        }
        output.clear();
        if conn.poll_transmit(&mut output) {
            stream.write_all(&output).await?;
        }
        // Large read replies leave a large buffer behind: give it back.
        if output.capacity() > 1 << 20 {
            output = Vec::new();
        }
        if let Err(e) = result {
            let _ = stream.shutdown().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
        }
        if conn.is_closed() {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}
