//! Building replies (RFC 2131 §4.1, §4.3 table 3): the fields copied from the request,
//! where the reply goes, and the size limits (option 57, the 300-byte BOOTP minimum).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::error::Result;
use crate::options::codes;
use crate::wire::message::FLAG_BROADCAST;
use crate::wire::{Message, MessageType, Op, overload};

/// The DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// The DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// The PXE boot server (ProxyDHCP request) port.
pub const BOOT_SERVER_PORT: u16 = 4011;
/// The smallest IP datagram every client accepts (RFC 2131 §2), minus IP and UDP headers.
pub const DEFAULT_MAX_MESSAGE: usize = 576 - 28;

/// Where a reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255 on the boot interface, to this port.
    Broadcast(u16),
    /// A unicast address and port (a relay, or a client that has an address).
    Unicast(SocketAddrV4),
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The message.
    pub message: Message,
    /// Where it goes.
    pub to: Destination,
}

/// A reply with the fields every server reply copies: `xid`, `flags`, `giaddr`,
/// `chaddr`, `htype`/`hlen`; option 53 and 54 set.
pub fn skeleton(request: &Message, kind: MessageType, server: Ipv4Addr) -> Message {
    let mut m = Message {
        op: Op::BootReply,
        htype: request.htype,
        hlen: request.hlen,
        xid: request.xid,
        flags: request.flags,
        giaddr: request.giaddr,
        chaddr: request.chaddr,
        ..Message::default()
    };
    m.options.push(codes::MESSAGE_TYPE, &[kind.into()]);
    m.options.push(codes::SERVER_ID, &server.octets());
    m
}

/// Sets the BROADCAST flag (clients without an address, as dnsmasq does for proxy replies).
pub fn force_broadcast(m: &mut Message) {
    m.flags |= FLAG_BROADCAST;
}

/// Where a reply to `request` on port 67 goes (RFC 2131 §4.1): the relay, else the
/// client's address, else broadcast (no ARP injection: broadcasting is always safe).
pub fn destination(request: &Message) -> Destination {
    if !request.giaddr.is_unspecified() {
        Destination::Unicast(SocketAddrV4::new(request.giaddr, SERVER_PORT))
    } else if !request.ciaddr.is_unspecified() {
        Destination::Unicast(SocketAddrV4::new(request.ciaddr, CLIENT_PORT))
    } else {
        Destination::Broadcast(CLIENT_PORT)
    }
}

/// Applies the size rules: overload into `file`/`sname` when the reply exceeds the
/// client's option 57 (at least 576), then pad to 300 bytes.
pub fn finish(mut m: Message, request: &Message) -> Result<Message> {
    let limit = request
        .option(codes::MAX_MESSAGE_SIZE)
        .and_then(|v| v.try_into().ok())
        .map(|b: [u8; 2]| usize::from(u16::from_be_bytes(b)).saturating_sub(28))
        .unwrap_or(0)
        .max(DEFAULT_MAX_MESSAGE);
    overload::fit(&mut m, limit)?;
    m.pad_to_minimum();
    Ok(m)
}
