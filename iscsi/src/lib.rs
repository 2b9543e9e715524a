//! An iSCSI target (RFC 7143) for block devices, in three layers like `nbd-proto`:
//!
//! * [`wire`]: PDUs as values (every opcode a target sends or receives), the text
//!   key=value codec, CRC32C digests ([`digest`]);
//! * [`session`]: a sans-IO target connection: login (AuthMethod None and CHAP),
//!   operational negotiation, discovery (SendTargets) and normal sessions, the
//!   CmdSN window, immediate/unsolicited/R2T data, Data-In with phase-collapsed status,
//!   NOP, task management, logout. Bytes in, bytes out;
//! * [`scsi`]: the SPC-4/SBC-3 block command set over a positional [`BlockDevice`];
//! * [`driver`] (feature `server`): a tokio listener serving a [`session::Target`]:
//!   one target with one LUN ([`session::SingleTarget`]), or whatever its
//!   [`session::Catalog`] grants each login.
//!
//! What it is not: an initiator, a multi-connection or error-recovery (ERL > 0)
//! implementation, or a SCSI target for anything but direct-access block devices.
//!
//! ```
//! use iscsi::wire::{Bhs, Digests, Pdu};
//! // A NOP-Out ping as the Linux initiator sends it: opcode 0x00 with the I bit, F set.
//! let mut bytes = [0u8; 48];
//! bytes[0] = 0x40;
//! bytes[1] = 0x80;
//! bytes[16..20].copy_from_slice(&7u32.to_be_bytes());
//! bytes[20..24].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
//! let (pdu, used) = Pdu::parse(&bytes, Digests::default(), 8192).unwrap().unwrap();
//! assert_eq!(used, 48);
//! let Bhs::NopOut(nop) = &pdu.bhs else { panic!() };
//! assert_eq!((nop.immediate, nop.itt), (true, 7));
//! assert_eq!(pdu.to_bytes(Digests::default()).unwrap(), bytes);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod digest;
#[cfg(feature = "server")]
pub mod driver;
mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod scsi;
pub mod session;
pub mod wire;

pub use error::{Error, ErrorKind};
pub use scsi::BlockDevice;
