//! Transmission replies: simple replies and structured reply chunks (SPECS §1.5).

use super::Reader;
use super::consts::*;
use super::errno::Errno;
use crate::error::{Error, Result};

/// Appends a simple reply header (data of a successful READ follows it).
pub fn emit_simple(out: &mut Vec<u8>, cookie: u64, error: Errno) {
    out.extend_from_slice(&NBD_SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&error.0.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
}

/// Appends a structured chunk header announcing `len` payload bytes.
pub fn emit_chunk_header(out: &mut Vec<u8>, flags: u16, chunk_type: u16, cookie: u64, len: u32) {
    out.extend_from_slice(&NBD_STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&chunk_type.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
}

/// Appends the header and offset of an OFFSET_DATA chunk carrying `data_len` bytes (which
/// the caller appends next).
pub fn emit_offset_data_header(
    out: &mut Vec<u8>,
    done: bool,
    cookie: u64,
    offset: u64,
    data_len: u32,
) {
    let flags = if done { NBD_REPLY_FLAG_DONE } else { 0 };
    emit_chunk_header(
        out,
        flags,
        NBD_REPLY_TYPE_OFFSET_DATA,
        cookie,
        data_len.saturating_add(8),
    );
    out.extend_from_slice(&offset.to_be_bytes());
}

/// Appends an OFFSET_HOLE chunk: `size` bytes at `offset` read as zeroes.
pub fn emit_offset_hole(out: &mut Vec<u8>, done: bool, cookie: u64, offset: u64, size: u32) {
    let flags = if done { NBD_REPLY_FLAG_DONE } else { 0 };
    emit_chunk_header(out, flags, NBD_REPLY_TYPE_OFFSET_HOLE, cookie, 12);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
}

/// Appends a final NONE chunk.
pub fn emit_none(out: &mut Vec<u8>, cookie: u64) {
    emit_chunk_header(out, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0);
}

/// Appends an ERROR chunk (or ERROR_OFFSET when `offset` is given), marked done.
pub fn emit_error_chunk(
    out: &mut Vec<u8>,
    cookie: u64,
    error: Errno,
    message: &str,
    offset: Option<u64>,
) {
    let msg = &message.as_bytes()[..message.len().min(4096)];
    let (ty, extra) = match offset {
        Some(_) => (NBD_REPLY_TYPE_ERROR_OFFSET, 8),
        None => (NBD_REPLY_TYPE_ERROR, 0),
    };
    emit_chunk_header(
        out,
        NBD_REPLY_FLAG_DONE,
        ty,
        cookie,
        (6 + msg.len() + extra) as u32,
    );
    out.extend_from_slice(&error.0.to_be_bytes());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    if let Some(off) = offset {
        out.extend_from_slice(&off.to_be_bytes());
    }
}

/// One block status descriptor: `length` bytes with `NBD_STATE_*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDescriptor {
    /// Length in bytes (never 0 on the wire).
    pub length: u32,
    /// State flags of the context (`NBD_STATE_HOLE`, `NBD_STATE_ZERO`).
    pub flags: u32,
}

/// Appends a BLOCK_STATUS chunk for context `context_id`.
pub fn emit_block_status(
    out: &mut Vec<u8>,
    done: bool,
    cookie: u64,
    context_id: u32,
    extents: &[BlockDescriptor],
) {
    let flags = if done { NBD_REPLY_FLAG_DONE } else { 0 };
    let len = 4 + 8 * extents.len();
    emit_chunk_header(out, flags, NBD_REPLY_TYPE_BLOCK_STATUS, cookie, len as u32);
    out.extend_from_slice(&context_id.to_be_bytes());
    for e in extents {
        out.extend_from_slice(&e.length.to_be_bytes());
        out.extend_from_slice(&e.flags.to_be_bytes());
    }
}

/// The header of a reply as a client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyHeader {
    /// A simple reply.
    Simple { error: Errno, cookie: u64 },
    /// A structured reply chunk with `len` bytes of payload.
    Structured {
        flags: u16,
        chunk_type: u16,
        cookie: u64,
        len: u32,
    },
}

impl ReplyHeader {
    /// Bytes needed to parse a header whose first 4 bytes are `magic`, or an error for an
    /// unknown magic.
    pub fn header_len(first4: &[u8]) -> Result<usize> {
        let magic = Reader::new(first4, "reply header").u32()?;
        match magic {
            NBD_SIMPLE_REPLY_MAGIC => Ok(SIMPLE_REPLY_HEADER_LEN),
            NBD_STRUCTURED_REPLY_MAGIC => Ok(STRUCTURED_REPLY_HEADER_LEN),
            other => Err(Error::BadMagic {
                structure: "reply header",
                found: other.into(),
            }),
        }
    }

    /// Parses a simple (16-byte) or structured (20-byte) header.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf, "reply header");
        match r.u32()? {
            NBD_SIMPLE_REPLY_MAGIC => Ok(ReplyHeader::Simple {
                error: Errno(r.u32()?),
                cookie: r.u64()?,
            }),
            NBD_STRUCTURED_REPLY_MAGIC => Ok(ReplyHeader::Structured {
                flags: r.u16()?,
                chunk_type: r.u16()?,
                cookie: r.u64()?,
                len: r.u32()?,
            }),
            other => Err(Error::BadMagic {
                structure: "reply header",
                found: other.into(),
            }),
        }
    }

    /// The echoed cookie.
    pub fn cookie(&self) -> u64 {
        match self {
            ReplyHeader::Simple { cookie, .. } | ReplyHeader::Structured { cookie, .. } => *cookie,
        }
    }
}

/// Decodes the error value and message of an ERROR / ERROR_OFFSET payload.
pub fn parse_error_payload(payload: &[u8]) -> Result<(Errno, String)> {
    let mut r = Reader::new(payload, "error chunk");
    let errno = Errno(r.u32()?);
    let len = r.u16()? as usize;
    let msg = String::from_utf8_lossy(r.bytes(len)?).into_owned();
    Ok((errno, msg))
}

/// Decodes a BLOCK_STATUS payload into its context id and descriptors.
pub fn parse_block_status(payload: &[u8]) -> Result<(u32, Vec<BlockDescriptor>)> {
    let mut r = Reader::new(payload, "block status chunk");
    let id = r.u32()?;
    if !r.remaining().is_multiple_of(8) || r.remaining() == 0 {
        return Err(Error::invalid(
            "block status chunk",
            "length",
            "not 4 + 8n with n >= 1",
        ));
    }
    let mut out = Vec::with_capacity(r.remaining() / 8);
    while r.remaining() > 0 {
        out.push(BlockDescriptor {
            length: r.u32()?,
            flags: r.u32()?,
        });
    }
    Ok((id, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_back() {
        let mut out = Vec::new();
        emit_simple(&mut out, 9, Errno::EINVAL);
        assert_eq!(
            ReplyHeader::parse(&out).unwrap(),
            ReplyHeader::Simple {
                error: Errno::EINVAL,
                cookie: 9
            }
        );
        let mut out = Vec::new();
        emit_error_chunk(&mut out, 3, Errno::EIO, "bad", Some(5));
        let h = ReplyHeader::parse(&out).unwrap();
        assert_eq!(
            h,
            ReplyHeader::Structured {
                flags: 1,
                chunk_type: NBD_REPLY_TYPE_ERROR_OFFSET,
                cookie: 3,
                len: 17
            }
        );
        assert_eq!(
            parse_error_payload(&out[20..]).unwrap(),
            (Errno::EIO, "bad".into())
        );
        let mut out = Vec::new();
        let d = [BlockDescriptor {
            length: 512,
            flags: 3,
        }];
        emit_block_status(&mut out, true, 1, 7, &d);
        assert_eq!(parse_block_status(&out[20..]).unwrap(), (7, d.to_vec()));
    }
}
