//! Thin tokio drivers (feature `server`) that move datagrams between UDP sockets and the
//! sans-IO transfers: [`Server`] serves a provider, [`download`] and [`upload`] move one file.

mod batch;
mod busy_poll;
pub mod client;
pub mod server;

pub use client::{download, upload};
pub use server::{Server, ServerConfig};
