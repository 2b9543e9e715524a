//! DHCPv4 and PXE for network boot.
//!
//! What it is: the DHCP message and option codec (unknown options round-trip byte for
//! byte), typed PXE options, ProxyDHCP and boot-service decisions as pure functions of a
//! request and a policy, and, behind the `server` feature, a UDP driver.
//!
//! What it is not: a general-purpose DHCP server for a whole site; it answers boot clients.
#![forbid(unsafe_code)]

pub mod error;
pub mod options;
pub mod wire;

pub use error::{Error, ErrorKind, Result};
pub use wire::{Message, MessageType, Op, Options};
pub mod client;
pub mod policy;
pub mod proxy;
pub mod reply;
pub mod request;

pub use policy::{BootPlan, Menu, MenuEntry, Policy, Silence};
pub use reply::{Destination, Reply};
pub use request::ClientInfo;
#[cfg(feature = "server")]
pub mod driver;
pub mod full;
pub mod ra;
pub mod rivals;
