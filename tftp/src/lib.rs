//! The Trivial File Transfer Protocol (RFC 1350, 2347, 2348, 2349, 7440).
//!
//! What it is: TFTP packets ([`packet`]), option negotiation ([`options`]), netascii
//! ([`netascii`]), sans-IO transfers ([`transfer`]: time is an input, deadlines are
//! outputs), file providers ([`provider`]: a confined directory, generated content) and,
//! behind the `server` feature, a tokio UDP driver (`driver::Server`) that serves any provider.
//!
//! What it is not: a general file server; it serves boot files. Uploads are off unless a
//! provider allows them. It does no I/O in its core: the driver moves datagrams.
//!
//! # Layers
//!
//! ```text
//!   UDP socket  <-- driver (feature "server": one task and one socket/TID per transfer)
//!       |  datagrams + now                     ^ datagrams, next deadline
//!       v                                      |
//!   ReadTransfer::handle_datagram / handle_timeout / poll_transmit / poll_timeout
//!       |  block n = bytes at (n-1)*blksize
//!       v
//!   Provider::open(path, peer) -> Source (shared open file or bytes in memory)
//! ```
//!
//! # The read transfer (server side of an RRQ)
//!
//! ```text
//!            RRQ
//!             |
//!  options? --+-- none ------------------------------.
//!     | accepted                                     v
//!  [OACK sent] --ACK 0--> [send window acked+1 ..= acked+windowsize] <------------.
//!     |    \                 |             |                  |                 |
//!  ERROR 8  RRQ again x2:    |    ACK n > acked: acked = n,   duplicate ACK:   timeout:
//!     |     drop options ----'    resend from n+1 (RFC 7440)   ignored          resend from
//!     v     (plain RFC 1350)      |                            (RFC 1123)       acked+1,
//!  Declined                  ACK of the last block                              retries capped
//!  (size probe)                   v
//!                             Completed
//! ```
//!
//! Block numbers wrap from 65535 to 0; the transfer counts blocks in 64 bits. The write
//! transfer and the client sides are drawn in their modules ([`transfer`]).
//!
//! # Example: a read transfer over in-memory packets
//!
//! A client asks for a 1000-byte file with blksize 512 and windowsize 2; the transfer
//! answers with an OACK, then one window of two blocks, and ends on the last ACK. No
//! socket and no sleep: `now` is whatever the caller says.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use tftp::packet::{Mode, Packet, Request};
//! use tftp::provider::MemorySource;
//! use tftp::transfer::{Outcome, ReadTransfer, TransferConfig};
//!
//! let file = Arc::new(MemorySource::from(vec![7u8; 1000]));
//! let request = Request {
//!     filename: "boot.ipxe".into(),
//!     mode: Mode::Octet,
//!     options: vec![("blksize".into(), "512".into()), ("windowsize".into(), "2".into())],
//! };
//! let now = Instant::now();
//! let mut t = ReadTransfer::new(now, &request, file, &TransferConfig::default()).unwrap();
//! let mut buf = vec![0u8; 65536];
//!
//! let n = t.poll_transmit(&mut buf).unwrap();
//! assert!(matches!(Packet::parse(&buf[..n]).unwrap(), Packet::Oack(_)));
//! assert_eq!(t.poll_transmit(&mut buf), None); // waits for ACK 0
//!
//! t.handle_datagram(now, &Packet::Ack(0).to_vec());
//! let mut blocks = Vec::new();
//! while let Some(n) = t.poll_transmit(&mut buf) {
//!     if let Packet::Data { block, data } = Packet::parse(&buf[..n]).unwrap() {
//!         blocks.push((block, data.len()));
//!     }
//! }
//! assert_eq!(blocks, [(1, 512), (2, 488)]); // one window
//!
//! // The ACK is lost: at the deadline the window is sent again.
//! let deadline = t.poll_timeout().unwrap();
//! t.handle_timeout(deadline + Duration::from_millis(1));
//! assert!(t.poll_transmit(&mut buf).is_some());
//!
//! t.handle_datagram(deadline, &Packet::Ack(2).to_vec());
//! assert!(matches!(t.outcome(), Some(Outcome::Completed)));
//! ```
#![forbid(unsafe_code)]

pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod netascii;
pub mod options;
pub mod packet;
pub mod provider;
pub mod transfer;

#[cfg(feature = "server")]
pub mod driver;

pub use error::{Error, ErrorCode, ErrorKind};
pub use options::{Limits, Options};
pub use packet::{Mode, Packet, Request};
pub use provider::{DirProvider, Fallback, Generated, MemorySource, Provider, Sink, Source};
pub use transfer::{ClientRead, ClientWrite, Outcome, ReadTransfer, TransferConfig, WriteTransfer};

#[cfg(feature = "server")]
pub use driver::{Server, ServerConfig, download, upload};
