//! Handshake options (client -> server) and option replies (server -> client),
//! SPECS §1.2-1.3.

use super::consts::*;
use super::{Reader, put_str32};
use crate::error::{Error, Result};

/// The fixed 16-byte header of a client option: `IHAVEOPT`, option code, data length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// The option code (`NBD_OPT_*`).
    pub option: u32,
    /// Length of the data that follows.
    pub len: u32,
}

impl OptionHeader {
    /// Parses the 16-byte header; a wrong magic is [`Error::BadMagic`].
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf, "option header");
        let magic = r.u64()?;
        if magic != NBD_OPTS_MAGIC {
            return Err(Error::BadMagic {
                structure: "option header",
                found: magic,
            });
        }
        Ok(Self {
            option: r.u32()?,
            len: r.u32()?,
        })
    }

    /// Appends the header.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&NBD_OPTS_MAGIC.to_be_bytes());
        out.extend_from_slice(&self.option.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
    }
}

/// The data of NBD_OPT_INFO and NBD_OPT_GO: an export name and the information
/// types the client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InfoRequest {
    /// Export name ("" = default export).
    pub name: String,
    /// Requested `NBD_INFO_*` types (unknown ones are kept and ignored by servers).
    pub requests: Vec<u16>,
}

/// The data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetaContextRequest {
    /// Export name.
    pub name: String,
    /// Queries such as `base:allocation` or `base:`.
    pub queries: Vec<String>,
}

/// A decoded client option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOption {
    /// NBD_OPT_EXPORT_NAME: the whole data is the name.
    ExportName(String),
    /// NBD_OPT_ABORT (any data is ignored).
    Abort,
    /// NBD_OPT_LIST; `has_data` when the client wrongly sent data.
    List { has_data: bool },
    /// NBD_OPT_STARTTLS; `has_data` when the client wrongly sent data.
    StartTls { has_data: bool },
    /// NBD_OPT_INFO.
    Info(InfoRequest),
    /// NBD_OPT_GO.
    Go(InfoRequest),
    /// NBD_OPT_STRUCTURED_REPLY; `has_data` when the client wrongly sent data.
    StructuredReply { has_data: bool },
    /// NBD_OPT_LIST_META_CONTEXT.
    ListMetaContext(MetaContextRequest),
    /// NBD_OPT_SET_META_CONTEXT.
    SetMetaContext(MetaContextRequest),
    /// Any other option code (including PEEK_EXPORT and EXTENDED_HEADERS).
    Unknown(u32),
}

impl ClientOption {
    /// The option code.
    pub fn code(&self) -> u32 {
        match self {
            ClientOption::ExportName(_) => NBD_OPT_EXPORT_NAME,
            ClientOption::Abort => NBD_OPT_ABORT,
            ClientOption::List { .. } => NBD_OPT_LIST,
            ClientOption::StartTls { .. } => NBD_OPT_STARTTLS,
            ClientOption::Info(_) => NBD_OPT_INFO,
            ClientOption::Go(_) => NBD_OPT_GO,
            ClientOption::StructuredReply { .. } => NBD_OPT_STRUCTURED_REPLY,
            ClientOption::ListMetaContext(_) => NBD_OPT_LIST_META_CONTEXT,
            ClientOption::SetMetaContext(_) => NBD_OPT_SET_META_CONTEXT,
            ClientOption::Unknown(code) => *code,
        }
    }

    /// Decodes an option's data. Malformed data of a known option is an error (the
    /// server answers it with NBD_REP_ERR_INVALID and goes on).
    pub fn parse(option: u32, data: &[u8]) -> Result<Self> {
        Ok(match option {
            NBD_OPT_EXPORT_NAME => ClientOption::ExportName(
                Reader::new(data, "EXPORT_NAME").string(data.len(), "name")?,
            ),
            NBD_OPT_ABORT => ClientOption::Abort,
            NBD_OPT_LIST => ClientOption::List {
                has_data: !data.is_empty(),
            },
            NBD_OPT_STARTTLS => ClientOption::StartTls {
                has_data: !data.is_empty(),
            },
            NBD_OPT_STRUCTURED_REPLY => ClientOption::StructuredReply {
                has_data: !data.is_empty(),
            },
            NBD_OPT_INFO | NBD_OPT_GO => {
                let mut r = Reader::new(data, "INFO/GO option");
                let len = r.u32()? as usize;
                let name = r.string(len, "export name")?;
                let n = r.u16()? as usize;
                if r.remaining() != n * 2 {
                    return Err(Error::invalid(
                        "INFO/GO option",
                        "information request count",
                        format!("{n} requests but {} bytes left", r.remaining()),
                    ));
                }
                let requests = (0..n).map(|_| r.u16()).collect::<Result<_>>()?;
                let req = InfoRequest { name, requests };
                if option == NBD_OPT_INFO {
                    ClientOption::Info(req)
                } else {
                    ClientOption::Go(req)
                }
            }
            NBD_OPT_LIST_META_CONTEXT | NBD_OPT_SET_META_CONTEXT => {
                let mut r = Reader::new(data, "META_CONTEXT option");
                let len = r.u32()? as usize;
                let name = r.string(len, "export name")?;
                let n = r.u32()? as usize;
                // Each query takes at least 4 bytes: cap the allocation by the real size.
                let mut queries = Vec::with_capacity(n.min(r.remaining() / 4));
                for _ in 0..n {
                    let qlen = r.u32()? as usize;
                    queries.push(r.string(qlen, "query")?);
                }
                if r.remaining() != 0 {
                    return Err(Error::invalid(
                        "META_CONTEXT option",
                        "length",
                        "trailing bytes",
                    ));
                }
                let req = MetaContextRequest { name, queries };
                if option == NBD_OPT_LIST_META_CONTEXT {
                    ClientOption::ListMetaContext(req)
                } else {
                    ClientOption::SetMetaContext(req)
                }
            }
            other => ClientOption::Unknown(other),
        })
    }

    /// Appends the option (header and data) as a client sends it.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut data = Vec::new();
        match self {
            ClientOption::ExportName(name) => data.extend_from_slice(name.as_bytes()),
            ClientOption::Info(req) | ClientOption::Go(req) => {
                put_str32(&mut data, &req.name);
                data.extend_from_slice(&(req.requests.len() as u16).to_be_bytes());
                for r in &req.requests {
                    data.extend_from_slice(&r.to_be_bytes());
                }
            }
            ClientOption::ListMetaContext(req) | ClientOption::SetMetaContext(req) => {
                put_str32(&mut data, &req.name);
                data.extend_from_slice(&(req.queries.len() as u32).to_be_bytes());
                for q in &req.queries {
                    put_str32(&mut data, q);
                }
            }
            _ => {}
        }
        OptionHeader {
            option: self.code(),
            len: data.len() as u32,
        }
        .emit(out);
        out.extend_from_slice(&data);
    }
}

/// The header of an option reply: magic, option, reply type, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionReplyHeader {
    /// The option this answers (echoed).
    pub option: u32,
    /// `NBD_REP_*`.
    pub reply_type: u32,
    /// Length of the data that follows.
    pub len: u32,
}

impl OptionReplyHeader {
    /// Parses the 20-byte header.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf, "option reply");
        let magic = r.u64()?;
        if magic != NBD_REP_MAGIC {
            return Err(Error::BadMagic {
                structure: "option reply",
                found: magic,
            });
        }
        Ok(Self {
            option: r.u32()?,
            reply_type: r.u32()?,
            len: r.u32()?,
        })
    }

    /// True for `NBD_REP_ERR_*`.
    pub fn is_error(&self) -> bool {
        self.reply_type & NBD_REP_FLAG_ERROR != 0
    }
}

/// Appends one option reply with its data.
pub fn emit_option_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, data: &[u8]) {
    out.extend_from_slice(&NBD_REP_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// The payload of an NBD_REP_INFO reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Info {
    /// NBD_INFO_EXPORT: size and transmission flags.
    Export { size: u64, flags: u16 },
    /// NBD_INFO_NAME.
    Name(String),
    /// NBD_INFO_DESCRIPTION.
    Description(String),
    /// NBD_INFO_BLOCK_SIZE: minimum, preferred, maximum.
    BlockSize { min: u32, preferred: u32, max: u32 },
    /// Any other type, kept as bytes.
    Unknown { info_type: u16, data: Vec<u8> },
}

impl Info {
    /// Encodes the payload (type included).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Info::Export { size, flags } => {
                out.extend_from_slice(&NBD_INFO_EXPORT.to_be_bytes());
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&flags.to_be_bytes());
            }
            Info::Name(s) | Info::Description(s) => {
                let t = if matches!(self, Info::Name(_)) {
                    NBD_INFO_NAME
                } else {
                    NBD_INFO_DESCRIPTION
                };
                out.extend_from_slice(&t.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Info::BlockSize {
                min,
                preferred,
                max,
            } => {
                out.extend_from_slice(&NBD_INFO_BLOCK_SIZE.to_be_bytes());
                for v in [min, preferred, max] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            Info::Unknown { info_type, data } => {
                out.extend_from_slice(&info_type.to_be_bytes());
                out.extend_from_slice(data);
            }
        }
        out
    }

    /// Decodes a payload.
    pub fn parse(data: &[u8]) -> Result<Self> {
        let mut r = Reader::new(data, "NBD_REP_INFO");
        let t = r.u16()?;
        let info = match t {
            NBD_INFO_EXPORT => Info::Export {
                size: r.u64()?,
                flags: r.u16()?,
            },
            NBD_INFO_NAME => Info::Name(r.string(r.remaining(), "name")?),
            NBD_INFO_DESCRIPTION => Info::Description(r.string(r.remaining(), "description")?),
            NBD_INFO_BLOCK_SIZE => Info::BlockSize {
                min: r.u32()?,
                preferred: r.u32()?,
                max: r.u32()?,
            },
            other => Info::Unknown {
                info_type: other,
                data: r.rest().to_vec(),
            },
        };
        if r.remaining() != 0 {
            return Err(Error::invalid("NBD_REP_INFO", "length", "trailing bytes"));
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip() {
        let cases = [
            ClientOption::ExportName("disk".into()),
            ClientOption::Go(InfoRequest {
                name: "x".into(),
                requests: vec![NBD_INFO_BLOCK_SIZE, 77],
            }),
            ClientOption::SetMetaContext(MetaContextRequest {
                name: "".into(),
                queries: vec!["base:allocation".into(), "qemu:x".into()],
            }),
            ClientOption::List { has_data: false },
            ClientOption::Unknown(4242),
        ];
        for opt in cases {
            let mut out = Vec::new();
            opt.emit(&mut out);
            let h = OptionHeader::parse(&out).unwrap();
            assert_eq!(h.len as usize, out.len() - OPTION_HEADER_LEN);
            assert_eq!(
                ClientOption::parse(h.option, &out[OPTION_HEADER_LEN..]).unwrap(),
                opt
            );
        }
    }

    #[test]
    fn malformed_info_is_an_error() {
        // name length beyond the data
        let data = [0, 0, 0, 9, b'a', 0, 0];
        assert!(ClientOption::parse(NBD_OPT_GO, &data).is_err());
        // count of requests disagrees with the bytes left
        let data = [0, 0, 0, 0, 0, 2, 0, 3];
        assert!(ClientOption::parse(NBD_OPT_INFO, &data).is_err());
        // meta context query count beyond the data must not allocate
        let data = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(ClientOption::parse(NBD_OPT_LIST_META_CONTEXT, &data).is_err());
    }

    #[test]
    fn info_round_trip() {
        for info in [
            Info::Export {
                size: 1 << 40,
                flags: 0x1234,
            },
            Info::Name("n".into()),
            Info::BlockSize {
                min: 1,
                preferred: 4096,
                max: 1 << 25,
            },
        ] {
            assert_eq!(Info::parse(&info.to_bytes()).unwrap(), info);
        }
    }
}
