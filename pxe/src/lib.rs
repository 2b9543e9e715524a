//! DHCPv4 and PXE for network boot.
//!
//! What it is: the DHCP message and option codec (unknown options round-trip byte for
//! byte, option overload, RFC 3396 long options), typed PXE options (60, 93, 94, 97,
//! 77, 43, 175), ProxyDHCP and boot-service decisions as pure functions of a request and
//! a [`Policy`] (fixed, or per client from the embedder through [`BootPolicy`]), a full
//! DHCP mode for isolated segments, rival-server detection, and, behind the `server`
//! feature, a tokio UDP driver.
//!
//! What it is not: a general-purpose DHCP server for a whole site (no DNS updates, no
//! failover, no DHCPv6); it answers boot clients, politely beside the site's server.
//!
//! Layers:
//! - [`wire`]: [`Message`] and [`Options`], bytes <-> types;
//! - [`options`]: typed views of the boot-related options;
//! - [`request::ClientInfo`], [`policy`], [`proxy`], [`full`], [`rivals`], [`ra`]:
//!   decisions, no I/O, time as an argument;
//! - `driver` (feature `server`): sockets on one interface, ports 67, 4011 and 68.
//!
//! # Example: the ProxyDHCP offer for a DISCOVER captured from QEMU's iPXE ROM
//!
//! ```
//! use std::net::Ipv4Addr;
//! use pxe::options::{ClientArch, codes};
//! use pxe::{ClientInfo, Destination, Message, MessageType, Policy};
//!
//! let bytes = include_bytes!("../testdata/ipxe-bios-discover.bin");
//! let discover = Message::parse(bytes)?;
//! assert_eq!(discover.encode(), bytes.to_vec()); // byte for byte
//!
//! let client = ClientInfo::from_message(&discover)?;
//! assert_eq!(client.arch(), Some(ClientArch::X86Bios));
//! assert!(client.is_ipxe()); // user class "iPXE": hand it a script, not iPXE again
//!
//! let mut policy = Policy::new(Ipv4Addr::new(10, 77, 0, 1))
//!     .with_boot_file(ClientArch::X86Bios, "undionly.kpxe");
//! policy.ipxe_script = Some("http://10.77.0.1/boot.ipxe".into());
//!
//! let reply = pxe::proxy::offer(&discover, &policy).expect("a PXE client gets an offer");
//! let offer = &reply.message;
//! assert_eq!(reply.to, Destination::Broadcast(68));
//! assert_eq!(offer.message_type(), Some(MessageType::Offer));
//! assert!(offer.yiaddr.is_unspecified()); // a proxy never hands out addresses
//! assert_eq!(offer.option(codes::VENDOR_CLASS).as_deref(), Some(&b"PXEClient"[..]));
//! assert_eq!(offer.option(codes::CLIENT_UUID), discover.option(codes::CLIENT_UUID));
//! assert_eq!(offer.file_name().as_deref(), Some("http://10.77.0.1/boot.ipxe"));
//! # Ok::<(), pxe::Error>(())
//! ```
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

pub use policy::{BootPlan, BootPolicy, Menu, MenuEntry, Policy, Silence};
pub use reply::{Destination, Reply};
pub use request::ClientInfo;
#[cfg(feature = "server")]
pub mod driver;
pub mod full;
#[doc(hidden)]
pub mod fuzz;
pub mod ra;
pub mod rivals;
