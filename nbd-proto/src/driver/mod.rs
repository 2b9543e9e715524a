//! The tokio drivers (feature `server`): they move bytes between sockets and the
//! sans-IO sessions, and nothing more.

mod busy_poll;
pub mod client;
mod handshaking;
pub mod pool;
pub mod server;
mod zero_copy;
