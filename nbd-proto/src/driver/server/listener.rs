//! The accept loop ([`Server::serve`]): connection and handshake limits (a newcomer
//! ends the oldest handshake when they are reached), the reply-buffer pool's upkeep,
//! shutdown ([`ShutdownHandle`]), and the listening socket's TCP congestion control
//! ([`listen`], [`set_congestion_control`]).

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::ServerConfig;
use super::connection::{EVICTED, POOL_BYTES, POOL_TRIM_PERIOD, Shared, connection};
use crate::driver::handshaking::Handshaking;
use crate::error::Result;
use crate::export::ExportProvider;

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
