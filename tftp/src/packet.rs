//! TFTP packets (RFC 1350 §5, RFC 2347 OACK): [`Packet::parse`] borrows a datagram,
//! [`Packet::emit`] writes one. Unknown opcodes parse to [`Packet::Unknown`].

use crate::error::{Error, ErrorCode};

/// Opcode of a read request.
pub const OP_RRQ: u16 = 1;
/// Opcode of a write request.
pub const OP_WRQ: u16 = 2;
/// Opcode of a DATA packet.
pub const OP_DATA: u16 = 3;
/// Opcode of an ACK packet.
pub const OP_ACK: u16 = 4;
/// Opcode of an ERROR packet.
pub const OP_ERROR: u16 = 5;
/// Opcode of an option acknowledgement (RFC 2347).
pub const OP_OACK: u16 = 6;

/// Offset of the opcode in every packet.
const OPCODE_AT: usize = 0;
/// Offset of the block number (DATA, ACK) or error code (ERROR).
const FIELD_AT: usize = 2;
/// Offset of the payload of DATA, the message of ERROR, the options of OACK.
const BODY_AT: usize = 4;

/// Largest request (RRQ/WRQ) we accept: RFC 2347 limits requests to 512 bytes.
pub const MAX_REQUEST_LEN: usize = 512;
/// Largest block size a peer may negotiate (RFC 2348).
pub const MAX_BLKSIZE: usize = 65464;
/// The RFC 1350 block size.
pub const DEFAULT_BLKSIZE: usize = 512;
/// Length of the DATA header (opcode and block number).
pub const DATA_HEADER_LEN: usize = 4;
/// Largest message we put in an ERROR packet.
const MAX_ERROR_MESSAGE: usize = 255;

/// The transfer mode of a request (RFC 1350 §5), compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `netascii`: text with CR LF line ends and CR NUL for a bare CR.
    Netascii,
    /// `octet`: raw bytes.
    Octet,
    /// `mail`: obsolete (RFC 1123 §4.2.2.1 says servers SHOULD NOT support it).
    Mail,
    /// Anything else, as sent.
    Unknown(String),
}

impl Mode {
    fn parse(text: &str) -> Self {
        if text.eq_ignore_ascii_case("octet") {
            Self::Octet
        } else if text.eq_ignore_ascii_case("netascii") {
            Self::Netascii
        } else if text.eq_ignore_ascii_case("mail") {
            Self::Mail
        } else {
            Self::Unknown(text.to_owned())
        }
    }

    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Netascii => "netascii",
            Self::Octet => "octet",
            Self::Mail => "mail",
            Self::Unknown(s) => s,
        }
    }
}

/// A read or write request: file name, mode and options (RFC 2347), in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The file name as sent (bytes that are not UTF-8 become U+FFFD).
    pub filename: String,
    /// The transfer mode.
    pub mode: Mode,
    /// Option names and values as sent (names compare without regard to case).
    pub options: Vec<(String, String)>,
}

/// One TFTP packet. DATA borrows its payload from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Read request (opcode 1).
    Rrq(Request),
    /// Write request (opcode 2).
    Wrq(Request),
    /// A block of data (opcode 3); the first block is 1.
    Data {
        /// Block number (wraps to 0 after 65535).
        block: u16,
        /// Payload, at most the negotiated block size.
        data: &'a [u8],
    },
    /// Acknowledgement of a block (opcode 4); ACK 0 answers an OACK or a WRQ.
    Ack(u16),
    /// An error that ends the transfer (opcode 5).
    Error {
        /// The error code.
        code: ErrorCode,
        /// The message (bytes that are not UTF-8 become U+FFFD).
        message: String,
    },
    /// Option acknowledgement (opcode 6, RFC 2347).
    Oack(Vec<(String, String)>),
    /// A packet with an opcode this crate does not know, kept with its body.
    Unknown {
        /// The opcode.
        opcode: u16,
        /// Everything after the opcode.
        body: &'a [u8],
    },
}

fn be16(bytes: &[u8], at: usize, structure: &'static str) -> Result<u16, Error> {
    match bytes.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(Error::Truncated {
            structure,
            need: at + 2,
            have: bytes.len(),
        }),
    }
}

/// Splits `bytes` into NUL-terminated strings; the last one must be terminated.
fn strings<'a>(
    bytes: &'a [u8],
    structure: &'static str,
    field: &'static str,
) -> Result<Vec<&'a [u8]>, Error> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = bytes.strip_suffix(&[0]) else {
        return Err(Error::Unterminated { structure, field });
    };
    Ok(body.split(|&b| b == 0).collect())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn pairs(items: &[&[u8]], structure: &'static str) -> Result<Vec<(String, String)>, Error> {
    if !items.len().is_multiple_of(2) {
        return Err(Error::Malformed {
            structure,
            what: format!("option `{}` has no value", text(items[items.len() - 1])),
        });
    }
    items
        .chunks_exact(2)
        .map(|kv| {
            if kv[0].is_empty() {
                return Err(Error::Malformed {
                    structure,
                    what: "empty option name".into(),
                });
            }
            Ok((text(kv[0]), text(kv[1])))
        })
        .collect()
}

impl<'a> Packet<'a> {
    /// Parses one datagram.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`], [`Error::Unterminated`], [`Error::Malformed`] or
    /// [`Error::TooLong`] saying which packet and what was wrong. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let opcode = be16(bytes, OPCODE_AT, "packet opcode")?;
        let body = &bytes[FIELD_AT..];
        match opcode {
            OP_RRQ | OP_WRQ => {
                let structure = if opcode == OP_RRQ { "RRQ" } else { "WRQ" };
                if bytes.len() > MAX_REQUEST_LEN {
                    return Err(Error::TooLong {
                        structure,
                        len: bytes.len(),
                        max: MAX_REQUEST_LEN,
                    });
                }
                let items = strings(body, structure, "filename/mode/options")?;
                if items.len() < 2 {
                    return Err(Error::Malformed {
                        structure,
                        what: "missing filename or mode".into(),
                    });
                }
                let request = Request {
                    filename: text(items[0]),
                    mode: Mode::parse(&text(items[1])),
                    options: pairs(&items[2..], structure)?,
                };
                Ok(if opcode == OP_RRQ {
                    Self::Rrq(request)
                } else {
                    Self::Wrq(request)
                })
            }
            OP_DATA => {
                let block = be16(bytes, FIELD_AT, "DATA block number")?;
                let data = &bytes[BODY_AT..];
                if data.len() > MAX_BLKSIZE {
                    return Err(Error::TooLong {
                        structure: "DATA payload",
                        len: data.len(),
                        max: MAX_BLKSIZE,
                    });
                }
                Ok(Self::Data { block, data })
            }
            OP_ACK => Ok(Self::Ack(be16(bytes, FIELD_AT, "ACK block number")?)),
            OP_ERROR => {
                let code = ErrorCode::from_u16(be16(bytes, FIELD_AT, "ERROR code")?);
                // Some stacks omit the final NUL: accept the message up to the first NUL.
                let raw = &bytes[BODY_AT..];
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                Ok(Self::Error {
                    code,
                    message: text(&raw[..end]),
                })
            }
            OP_OACK => {
                let items = strings(body, "OACK", "options")?;
                Ok(Self::Oack(pairs(&items, "OACK")?))
            }
            opcode => Ok(Self::Unknown { opcode, body }),
        }
    }

    /// The opcode of this packet.
    pub fn opcode(&self) -> u16 {
        match self {
            Self::Rrq(_) => OP_RRQ,
            Self::Wrq(_) => OP_WRQ,
            Self::Data { .. } => OP_DATA,
            Self::Ack(_) => OP_ACK,
            Self::Error { .. } => OP_ERROR,
            Self::Oack(_) => OP_OACK,
            Self::Unknown { opcode, .. } => *opcode,
        }
    }

    fn options_len(options: &[(String, String)]) -> usize {
        options.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
    }

    fn message(message: &str) -> &[u8] {
        let bytes = message.as_bytes();
        let mut end = bytes.len().min(MAX_ERROR_MESSAGE);
        // Never cut inside a NUL (ends the field) or a UTF-8 sequence.
        if let Some(nul) = bytes[..end].iter().position(|&b| b == 0) {
            end = nul;
        }
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        &bytes[..end]
    }

    /// The number of bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        2 + match self {
            Self::Rrq(r) | Self::Wrq(r) => {
                r.filename.len() + r.mode.as_str().len() + 2 + Self::options_len(&r.options)
            }
            Self::Data { data, .. } => 2 + data.len(),
            Self::Ack(_) => 2,
            Self::Error { message, .. } => 2 + Self::message(message).len() + 1,
            Self::Oack(options) => Self::options_len(options),
            Self::Unknown { body, .. } => body.len(),
        }
    }

    /// Writes the packet at the start of `buf` and returns its length.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let need = self.buffer_len();
        if buf.len() < need {
            return Err(Error::BufferTooSmall {
                structure: "packet",
                need,
                have: buf.len(),
            });
        }
        let mut w = Writer { buf, at: 0 };
        w.put(&self.opcode().to_be_bytes());
        match self {
            Self::Rrq(r) | Self::Wrq(r) => {
                w.cstr(r.filename.as_bytes());
                w.cstr(r.mode.as_str().as_bytes());
                w.options(&r.options);
            }
            Self::Data { block, data } => {
                w.put(&block.to_be_bytes());
                w.put(data);
            }
            Self::Ack(block) => w.put(&block.to_be_bytes()),
            Self::Error { code, message } => {
                w.put(&code.to_u16().to_be_bytes());
                w.cstr(Self::message(message));
            }
            Self::Oack(options) => w.options(options),
            Self::Unknown { body, .. } => w.put(body),
        }
        debug_assert_eq!(w.at, need);
        Ok(need)
    }

    /// The packet as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0; self.buffer_len()];
        let n = self.emit(&mut buf).unwrap_or(0);
        buf.truncate(n);
        buf
    }
}

/// Writes a DATA header for `block` into `buf[..4]`; the caller puts the payload after it.
///
/// # Errors
///
/// [`Error::BufferTooSmall`] when `buf` has fewer than 4 bytes.
pub fn emit_data_header(block: u16, buf: &mut [u8]) -> Result<(), Error> {
    let Some(header) = buf.get_mut(..DATA_HEADER_LEN) else {
        return Err(Error::BufferTooSmall {
            structure: "DATA header",
            need: DATA_HEADER_LEN,
            have: buf.len(),
        });
    };
    header[..2].copy_from_slice(&OP_DATA.to_be_bytes());
    header[2..].copy_from_slice(&block.to_be_bytes());
    Ok(())
}

/// A cursor over a buffer already checked to be long enough.
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn cstr(&mut self, bytes: &[u8]) {
        self.put(bytes);
        self.put(&[0]);
    }

    fn options(&mut self, options: &[(String, String)]) {
        for (k, v) in options {
            self.cstr(k.as_bytes());
            self.cstr(v.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_uefi_size_probe() {
        // EDK2 PxeBcDxe's first request (SPECS §3.3, proxy-uefi pcap).
        let bytes =
            b"\x00\x01boot.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00";
        let Packet::Rrq(r) = Packet::parse(bytes).unwrap() else {
            panic!("not an RRQ")
        };
        assert_eq!(r.filename, "boot.efi");
        assert_eq!(r.mode, Mode::Octet);
        assert_eq!(r.options.len(), 3);
        assert_eq!(r.options[1], ("blksize".into(), "1468".into()));
        assert_eq!(Packet::Rrq(r).to_vec(), bytes);
    }

    #[test]
    fn parses_error_8_from_uefi() {
        let bytes = b"\x00\x05\x00\x08User aborted the transfer\x00";
        assert_eq!(
            Packet::parse(bytes).unwrap(),
            Packet::Error {
                code: ErrorCode::OptionRefused,
                message: "User aborted the transfer".into()
            }
        );
    }

    #[test]
    fn mode_is_case_insensitive() {
        let Packet::Rrq(r) = Packet::parse(b"\x00\x01f\x00OcTeT\x00").unwrap() else {
            panic!()
        };
        assert_eq!(r.mode, Mode::Octet);
        let Packet::Wrq(r) = Packet::parse(b"\x00\x02f\x00NETASCII\x00").unwrap() else {
            panic!()
        };
        assert_eq!(r.mode, Mode::Netascii);
    }

    #[test]
    fn rejects_bad_requests() {
        assert!(Packet::parse(b"").is_err());
        assert!(Packet::parse(b"\x00").is_err());
        assert!(Packet::parse(b"\x00\x01f\x00octet").is_err());
        assert!(Packet::parse(b"\x00\x01f\x00").is_err());
        assert!(Packet::parse(b"\x00\x01f\x00octet\x00blksize\x00").is_err());
        let mut long = b"\x00\x01".to_vec();
        long.extend(std::iter::repeat_n(b'a', 600));
        long.extend(b"\x00octet\x00");
        assert!(matches!(Packet::parse(&long), Err(Error::TooLong { .. })));
        assert!(Packet::parse(b"\x00\x03\x00").is_err());
        assert!(Packet::parse(b"\x00\x04\x00").is_err());
    }

    #[test]
    fn unknown_opcodes_are_values() {
        assert_eq!(
            Packet::parse(b"\x00\x09abc").unwrap(),
            Packet::Unknown {
                opcode: 9,
                body: b"abc"
            }
        );
    }

    #[test]
    fn data_ack_oack_round_trip() {
        let packets = [
            Packet::Data {
                block: 65535,
                data: b"hello",
            },
            Packet::Data {
                block: 0,
                data: b"",
            },
            Packet::Ack(7),
            Packet::Oack(vec![
                ("blksize".into(), "1468".into()),
                ("tsize".into(), "0".into()),
            ]),
            Packet::Error {
                code: ErrorCode::FileNotFound,
                message: "File not found".into(),
            },
        ];
        for p in packets {
            assert_eq!(Packet::parse(&p.to_vec()).unwrap(), p);
        }
    }

    #[test]
    fn emit_checks_the_buffer() {
        let mut small = [0u8; 3];
        assert!(Packet::Ack(1).emit(&mut small).is_err());
    }
}
