//! HTTP/1.1 as provisiond's listeners serve it (the admin API, the boot files): one
//! accept loop on hyper, keep-alive, a deadline for each request head, and an
//! [`admission`] that bounds connections per address and in all, closing the oldest
//! connection that never sent a request when a newcomer needs its place.

mod admission;
pub mod boot_files;
mod range;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use admission::Admission;

/// How many connections a listener holds, and how long a request head may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once; past it, the oldest that sent nothing makes room.
    pub max_connections: usize,
    /// Connections one address may hold at once.
    pub per_source: usize,
    /// Time a client has to send a request head (also between requests of a
    /// keep-alive connection).
    pub head_time: Duration,
}

/// Binds `listen`; `what` names the service in logs and errors.
pub(crate) async fn bind(listen: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen for {what} on {listen}: {e}"))
}

/// Serves `router` on `listener` until the task is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    what: &'static str,
) {
    let admission = Admission::new(limits.max_connections, limits.per_source);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(service = what, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(ticket) = admission.admit(peer.ip()) else {
            tracing::debug!(service = what, %peer, "too many connections from this address; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let evicted = ticket.evicted();
            let serving = ticket.serving();
            let service = hyper::service::service_fn(move |mut request| {
                serving.mark();
                // Handlers that answer by client (boot files) read the peer from here.
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), request)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head_time)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(service = what, %peer, error = %e, "connection ended");
                    }
                }
                () = evicted => {
                    tracing::debug!(service = what, %peer, "idle connection closed to make room");
                }
            }
            drop(ticket);
        });
    }
}
