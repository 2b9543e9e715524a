//! The Network Block Device protocol.
//!
//! What it is: NBD wire types, sans-IO server and client sessions (fixed newstyle
//! handshake, options, simple and structured replies, block status), and, behind the
//! `server` feature, a tokio driver that serves any `Export` over TCP.
//!
//! What it is not: a disk image format (see the `vhd` crate) or a kernel client.
#![forbid(unsafe_code)]
