//! The BOOTP/DHCP message (RFC 2131 §2): the 236-byte fixed part, the magic cookie and
//! the option area, with the `sname`/`file` fields kept raw so overloaded messages
//! re-encode byte for byte.

use std::net::Ipv4Addr;

use super::options::{END, Options};
use super::overload::Overload;
use crate::error::{Error, Result};
use crate::options::codes;

/// Offsets of the fixed fields (RFC 2131 figure 1).
mod offset {
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: usize = 4;
    pub const SECS: usize = 8;
    pub const FLAGS: usize = 10;
    pub const CIADDR: usize = 12;
    pub const YIADDR: usize = 16;
    pub const SIADDR: usize = 20;
    pub const GIADDR: usize = 24;
    pub const CHADDR: usize = 28;
    pub const SNAME: usize = 44;
    pub const FILE: usize = 108;
    pub const COOKIE: usize = 236;
    pub const OPTIONS: usize = 240;
}

/// The DHCP magic cookie (RFC 2131 §3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Size of the fixed part plus the cookie.
pub const HEADER_LEN: usize = offset::OPTIONS;
/// Minimum size of a BOOTP message on the wire (RFC 1542 §2.1); replies are padded to it.
pub const MIN_LEN: usize = 300;
/// The BROADCAST bit of `flags`.
pub const FLAG_BROADCAST: u16 = 0x8000;

/// BOOTP `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// 1: from client to server.
    BootRequest,
    /// 2: from server to client.
    BootReply,
    /// Anything else, kept as is.
    Unknown(u8),
}

impl From<u8> for Op {
    fn from(v: u8) -> Self {
        match v {
            1 => Op::BootRequest,
            2 => Op::BootReply,
            n => Op::Unknown(n),
        }
    }
}

impl From<Op> for u8 {
    fn from(op: Op) -> u8 {
        match op {
            Op::BootRequest => 1,
            Op::BootReply => 2,
            Op::Unknown(n) => n,
        }
    }
}

/// DHCP message type, option 53 (RFC 2132 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1
    Discover,
    /// 2
    Offer,
    /// 3
    Request,
    /// 4
    Decline,
    /// 5
    Ack,
    /// 6
    Nak,
    /// 7
    Release,
    /// 8
    Inform,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(v: u8) -> Self {
        use MessageType::*;
        match v {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            n => Unknown(n),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(t: MessageType) -> u8 {
        use MessageType::*;
        match t {
            Discover => 1,
            Offer => 2,
            Request => 3,
            Decline => 4,
            Ack => 5,
            Nak => 6,
            Release => 7,
            Inform => 8,
            Unknown(n) => n,
        }
    }
}

/// A DHCP message. Fields are public; [`Message::parse`] and [`Message::encode`] are
/// exact inverses for every message `parse` accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// BOOTP op.
    pub op: Op,
    /// Hardware type (1 = Ethernet).
    pub htype: u8,
    /// Hardware address length (6 for Ethernet).
    pub hlen: u8,
    /// Relay hops.
    pub hops: u8,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags (bit 15: BROADCAST).
    pub flags: u16,
    /// Client address (when it has one).
    pub ciaddr: Ipv4Addr,
    /// "Your" address: the one offered or assigned.
    pub yiaddr: Ipv4Addr,
    /// Next server (TFTP) address.
    pub siaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Client hardware address, padded.
    pub chaddr: [u8; 16],
    /// Server host name field, raw (holds options when overloaded).
    pub sname: [u8; 64],
    /// Boot file field, raw (holds options when overloaded).
    pub file: [u8; 128],
    /// The main option area, without END.
    pub options: Options,
    /// Bytes after END (padding), kept so a parsed message re-encodes identically.
    pub trailer: Vec<u8>,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            op: Op::BootRequest,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid: 0,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [0; 16],
            sname: [0; 64],
            file: [0; 128],
            options: Options::new(),
            trailer: Vec::new(),
        }
    }
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

impl Message {
    /// Parses a message, validating the cookie, every option area (including the
    /// overloaded `file`/`sname`) and the END option.
    pub fn parse(bytes: &[u8]) -> Result<Message> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated {
                structure: "DHCP message header",
                need: HEADER_LEN,
                have: bytes.len(),
            });
        }
        let cookie: [u8; 4] = [
            bytes[offset::COOKIE],
            bytes[offset::COOKIE + 1],
            bytes[offset::COOKIE + 2],
            bytes[offset::COOKIE + 3],
        ];
        if cookie != MAGIC_COOKIE {
            return Err(Error::BadCookie { found: cookie });
        }
        let area = Options::parse_area(&bytes[offset::OPTIONS..], "options")?;
        if !area.ended {
            return Err(Error::MissingEnd { area: "options" });
        }
        let mut chaddr = [0; 16];
        chaddr.copy_from_slice(&bytes[offset::CHADDR..offset::SNAME]);
        let mut sname = [0; 64];
        sname.copy_from_slice(&bytes[offset::SNAME..offset::FILE]);
        let mut file = [0; 128];
        file.copy_from_slice(&bytes[offset::FILE..offset::COOKIE]);
        let msg = Message {
            op: Op::from(bytes[offset::OP]),
            htype: bytes[offset::HTYPE],
            hlen: bytes[offset::HLEN],
            hops: bytes[offset::HOPS],
            xid: u32::from_be_bytes([
                bytes[offset::XID],
                bytes[offset::XID + 1],
                bytes[offset::XID + 2],
                bytes[offset::XID + 3],
            ]),
            secs: u16::from_be_bytes([bytes[offset::SECS], bytes[offset::SECS + 1]]),
            flags: u16::from_be_bytes([bytes[offset::FLAGS], bytes[offset::FLAGS + 1]]),
            ciaddr: ip_at(bytes, offset::CIADDR),
            yiaddr: ip_at(bytes, offset::YIADDR),
            siaddr: ip_at(bytes, offset::SIADDR),
            giaddr: ip_at(bytes, offset::GIADDR),
            chaddr,
            sname,
            file,
            options: area.options,
            trailer: area.trailer,
        };
        // Validate the overloaded areas now so later reads cannot fail.
        msg.overload_areas()?;
        Ok(msg)
    }

    /// The option overload (52) of the main area, validated.
    pub fn overload(&self) -> Result<Option<Overload>> {
        match self.options.get(codes::OVERLOAD) {
            None => Ok(None),
            Some(v) if v.len() == 1 => {
                Overload::from_u8(v[0]).map(Some).ok_or(Error::BadOverload {
                    what: "value is not 1, 2 or 3",
                })
            }
            Some(_) => Err(Error::BadOverload {
                what: "length is not 1",
            }),
        }
    }

    /// The options carried in `file` then `sname` when overloaded (RFC 2131 §4.1 order).
    fn overload_areas(&self) -> Result<Vec<Options>> {
        let Some(ov) = self.overload()? else {
            return Ok(Vec::new());
        };
        let mut areas = Vec::new();
        let mut take = |bytes: &[u8], name: &'static str| -> Result<()> {
            let a = Options::parse_area(bytes, name)?;
            if a.options.contains(codes::OVERLOAD) {
                return Err(Error::BadOverload {
                    what: "option 52 inside an overloaded area",
                });
            }
            areas.push(a.options);
            Ok(())
        };
        if ov.file() {
            take(&self.file, "file")?;
        }
        if ov.sname() {
            take(&self.sname, "sname")?;
        }
        Ok(areas)
    }

    /// Every option of the message in order: the main area, then `file`, then `sname`
    /// when overloaded. Invalid overloaded areas contribute nothing.
    pub fn all_options(&self) -> Options {
        let mut all = self.options.clone();
        for a in self.overload_areas().unwrap_or_default() {
            all.extend(&a);
        }
        all
    }

    /// The value of option `code`, all instances in all areas concatenated (RFC 3396).
    pub fn option(&self, code: u8) -> Option<Vec<u8>> {
        if self.overload().ok().flatten().is_none() {
            return self.options.get(code);
        }
        self.all_options().get(code)
    }

    /// The DHCP message type (option 53), if present and one byte long.
    pub fn message_type(&self) -> Option<MessageType> {
        match self.option(codes::MESSAGE_TYPE)?.as_slice() {
            [t] => Some(MessageType::from(*t)),
            _ => None,
        }
    }

    /// The client's Ethernet address when `htype`/`hlen` say Ethernet.
    pub fn mac(&self) -> Option<[u8; 6]> {
        (self.htype == 1 && self.hlen == 6).then(|| {
            let mut m = [0; 6];
            m.copy_from_slice(&self.chaddr[..6]);
            m
        })
    }

    /// Whether the BROADCAST flag is set.
    pub fn broadcast(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }

    /// The boot file name (`file` up to its first NUL) unless `file` holds options.
    pub fn file_name(&self) -> Option<String> {
        if self.overload().ok().flatten().is_some_and(|o| o.file()) {
            return None;
        }
        c_string(&self.file)
    }

    /// The server host name (`sname` up to its first NUL) unless `sname` holds options.
    pub fn server_name(&self) -> Option<String> {
        if self.overload().ok().flatten().is_some_and(|o| o.sname()) {
            return None;
        }
        c_string(&self.sname)
    }

    /// Sets `file` to `name` (NUL padded). Fails when it does not fit (127 bytes + NUL).
    pub fn set_file_name(&mut self, name: &str) -> Result<()> {
        set_c_string(&mut self.file, name)
    }

    /// Sets `sname` to `name` (NUL padded). Fails when it does not fit (63 bytes + NUL).
    pub fn set_server_name(&mut self, name: &str) -> Result<()> {
        set_c_string(&mut self.sname, name)
    }

    /// Bytes of the encoded message.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.options.encoded_len() + 1 + self.trailer.len()
    }

    /// Encodes the message: header, cookie, options, END, trailer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len().max(MIN_LEN));
        out.push(self.op.into());
        out.extend_from_slice(&[self.htype, self.hlen, self.hops]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&self.secs.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        for ip in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            out.extend_from_slice(&ip.octets());
        }
        out.extend_from_slice(&self.chaddr);
        out.extend_from_slice(&self.sname);
        out.extend_from_slice(&self.file);
        out.extend_from_slice(&MAGIC_COOKIE);
        self.options.emit(&mut out);
        out.push(END);
        out.extend_from_slice(&self.trailer);
        out
    }

    /// Pads the trailer with zeros so the message is at least [`MIN_LEN`] bytes, as
    /// BOOTP relays and old clients expect.
    pub fn pad_to_minimum(&mut self) {
        let len = self.encoded_len();
        if len < MIN_LEN {
            self.trailer.resize(self.trailer.len() + (MIN_LEN - len), 0);
        }
    }
}

fn c_string(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    (end > 0).then(|| String::from_utf8_lossy(&field[..end]).into_owned())
}

fn set_c_string(field: &mut [u8], value: &str) -> Result<()> {
    let bytes = value.as_bytes();
    if bytes.len() >= field.len() {
        return Err(Error::TooLarge {
            need: bytes.len() + 1,
            limit: field.len(),
        });
    }
    field.fill(0);
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Vec<u8> {
        let mut m = Message {
            xid: 0x1234_5678,
            ..Message::default()
        };
        m.options.push(codes::MESSAGE_TYPE, &[1]);
        m.encode()
    }

    #[test]
    fn every_message_type_round_trips() {
        for t in 1..=9u8 {
            let mut m = Message::default();
            m.options.push(codes::MESSAGE_TYPE, &[t]);
            let back = Message::parse(&m.encode()).unwrap();
            assert_eq!(back.message_type(), Some(MessageType::from(t)));
            assert_eq!(u8::from(MessageType::from(t)), t);
        }
    }

    #[test]
    fn rejects_short_bad_cookie_and_missing_end() {
        let good = minimal();
        assert!(Message::parse(&good).is_ok());
        assert!(matches!(
            Message::parse(&good[..239]).unwrap_err(),
            Error::Truncated {
                need: 240,
                have: 239,
                ..
            }
        ));
        let mut bad = good.clone();
        bad[236] = 0;
        assert!(matches!(
            Message::parse(&bad).unwrap_err(),
            Error::BadCookie { .. }
        ));
        let no_end = &good[..good.len() - 1];
        assert!(matches!(
            Message::parse(no_end).unwrap_err(),
            Error::MissingEnd { .. }
        ));
    }

    #[test]
    fn overloaded_options_are_read_from_file_and_sname() {
        let mut m = Message::default();
        m.options.push(codes::MESSAGE_TYPE, &[2]);
        m.options.push(codes::OVERLOAD, &[3]);
        m.file[..5].copy_from_slice(&[67, 2, b'a', b'b', 255]);
        m.sname[..4].copy_from_slice(&[67, 1, b'c', 255]);
        let back = Message::parse(&m.encode()).unwrap();
        assert_eq!(back.option(67).unwrap(), b"abc");
        assert_eq!(back.file_name(), None);
        assert_eq!(back.encode(), m.encode());
    }

    #[test]
    fn overload_loops_and_bad_values_are_rejected() {
        let mut m = Message::default();
        m.options.push(codes::OVERLOAD, &[1]);
        m.file[..4].copy_from_slice(&[52, 1, 1, 255]);
        assert!(matches!(
            Message::parse(&m.encode()).unwrap_err(),
            Error::BadOverload { .. }
        ));
        let mut m = Message::default();
        m.options.push(codes::OVERLOAD, &[7]);
        assert!(matches!(
            Message::parse(&m.encode()).unwrap_err(),
            Error::BadOverload { .. }
        ));
        let mut m = Message::default();
        m.options.push(codes::OVERLOAD, &[1]);
        m.file[..3].copy_from_slice(&[67, 200, 1]);
        assert!(matches!(
            Message::parse(&m.encode()).unwrap_err(),
            Error::OptionOverrun { area: "file", .. }
        ));
    }

    #[test]
    fn file_and_sname_strings() {
        let mut m = Message::default();
        m.set_file_name("undionly.kpxe").unwrap();
        m.set_server_name("boot").unwrap();
        assert_eq!(m.file_name().as_deref(), Some("undionly.kpxe"));
        assert_eq!(m.server_name().as_deref(), Some("boot"));
        assert!(m.set_file_name(&"x".repeat(128)).is_err());
        m.pad_to_minimum();
        assert_eq!(m.encode().len(), MIN_LEN);
    }
}
