//! The Network Block Device protocol.
//!
//! What it is: NBD wire types ([`wire`]), a sans-IO server session ([`server`]: the
//! fixed newstyle handshake with EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY,
//! LIST/SET_META_CONTEXT; transmission with simple and structured replies and
//! `base:allocation` block status), a sans-IO client session ([`client`]), the [`Export`]
//! trait a server serves, and, behind the `server` feature, tokio drivers (`driver`): a
//! server for any [`ExportProvider`] over TCP and a small pipelining client. An export
//! that can say where its bytes are stored ([`Export::locate`]) has large READs sent
//! with `sendfile(2)` straight from the page cache.
//!
//! ```text
//!  bytes from socket --> server::handshake::Handshake --(Negotiated)--> server::transmission::Transmission
//!                            |  option replies                             | decode / check / execute(&Export)
//!                            v                                             v
//!                      bytes to socket                           reply bytes (any order)
//! ```
//!
//! What it is not: a disk image format (see the `vhd` crate), a kernel client, or TLS
//! (STARTTLS is refused with `NBD_REP_ERR_UNSUP`). Oldstyle negotiation is not offered.
//!
//! The rules implemented are those of the NBD protocol document (NetworkBlockDevice
//! `doc/proto.md`); the error value each bad request gets follows its "Error values"
//! section.
//!
//! # Example: a handshake over in-memory bytes
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use nbd_proto::{MemoryExport, SingleExport};
//! use nbd_proto::server::handshake::{Handshake, HandshakeConfig, Progress};
//! use nbd_proto::server::transmission::Transmission;
//! use nbd_proto::wire::option::{ClientOption, InfoRequest};
//! use nbd_proto::wire::request::{Command, Request};
//!
//! let provider = SingleExport::new("disk", Arc::new(MemoryExport::new(vec![7; 4096])));
//! let peer = "127.0.0.1:50000".parse().unwrap();
//! let mut hs = Handshake::new(peer, Instant::now(), HandshakeConfig::default());
//! let greeting = hs.take_output();
//! assert_eq!(&greeting[..8], b"NBDMAGIC");
//!
//! // The client: flags, then GO for "disk".
//! let mut input = 1u32.to_be_bytes().to_vec();
//! ClientOption::Go(InfoRequest { name: "disk".into(), requests: vec![] }).emit(&mut input);
//! let (used, _) = hs.handle_input(&input, &provider).unwrap();
//! let (_, progress) = hs.handle_input(&input[used..], &provider).unwrap();
//! let Progress::Transmission(negotiated) = progress else { panic!("expected GO to succeed") };
//! assert_eq!(negotiated.size, 4096);
//!
//! // Transmission: a READ of 16 bytes gets a 16-byte simple reply header plus the data.
//! let session = Transmission::new(*negotiated);
//! let req = Request { flags: 0, command: Command::Read, cookie: 1, offset: 8, length: 16 };
//! let reply = session.execute(&req, &[]);
//! assert_eq!(reply.len(), 16 + 16);
//! assert!(reply[16..].iter().all(|&b| b == 7));
//! ```
#![deny(unsafe_code)]

pub mod client;
#[cfg(feature = "server")]
pub mod driver;
mod end_signal;
pub mod error;
pub mod export;
pub mod fuzz;
pub mod server;
pub mod wire;

pub use end_signal::{EndSignal, Ended};
pub use error::{Error, ErrorKind, Result};
pub use export::{
    BlockSizes, Capabilities, Errno, Export, ExportListing, ExportProvider, Extent, Located,
    MemoryExport, Refusal, SingleExport, ZeroFlags,
};
