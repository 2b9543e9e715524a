//! Thin tokio drivers (feature `server`) that move datagrams between UDP sockets and the
//! sans-IO transfers: [`Server`] serves a provider, [`download`] fetches one file.

pub mod client;
pub mod server;

pub use client::download;
pub use server::{Server, ServerConfig};
