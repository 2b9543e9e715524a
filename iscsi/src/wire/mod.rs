//! Bytes <-> values (RFC 7143 §11): the 48-byte Basic Header Segment of every opcode
//! ([`Bhs`]), whole PDUs with AHS, padded data segment and digests ([`Pdu`]), and the
//! text key=value codec of login and text PDUs ([`text`]).

mod bhs;
mod pdu;
pub mod text;

pub use bhs::*;
pub use pdu::{Digests, Pdu, padded};
