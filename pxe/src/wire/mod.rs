//! Bytes <-> types for DHCPv4 (RFC 2131, RFC 2132, RFC 3396): the BOOTP message,
//! its option list and option overload into `sname`/`file`.

pub mod message;
pub mod options;
pub mod overload;

pub use message::{Message, MessageType, Op};
pub use options::{OptionEntry, Options};
pub use overload::Overload;
