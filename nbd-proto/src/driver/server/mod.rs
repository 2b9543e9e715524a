//! A TCP server that serves the exports of an [`ExportProvider`](crate::ExportProvider).
//!
//! Per connection: one task reads requests and asks the session how to serve each
//! ([`Transmission::route`](crate::server::transmission::Transmission::route)); it runs
//! small ones itself and hands the rest to tokio's blocking pool, where the session
//! calls the export; replies go to a writer task in the order they finish. A READ whose
//! bytes the export locates in files that are in the page cache is not executed at
//! all: the writer task sends it with `sendfile(2)`, never copying it through a
//! buffer; small READs of file bytes that are not in the page cache are read on the
//! blocking pool. Memory is bounded per connection (in-flight payload bytes and request
//! count) and across the server (connection count, handshake timeout, bytes held in
//! buffers). [`ShutdownHandle::shutdown`] stops accepting, lets in-flight requests
//! finish and closes every connection.
//!
//! The rooms: `config` (limits, keepalive), `listener` (the accept loop, shutdown,
//! the listening socket), `connection` (handshake, then the transmission loop that
//! follows the session's route per request) and `writer` (the task that sends
//! replies).

mod config;
mod connection;
mod listener;
mod writer;

pub use config::{Keepalive, ServerConfig, set_keepalive};
pub use connection::serve_connection;
pub use listener::{Server, ShutdownHandle, listen, set_congestion_control};
