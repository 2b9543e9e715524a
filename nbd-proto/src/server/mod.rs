//! The server side, without I/O: the handshake and the transmission phase.

pub mod handshake;
pub mod transmission;
