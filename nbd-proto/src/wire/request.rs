//! Transmission requests: the compact 28-byte header (SPECS §1.5).

use super::Reader;
use super::consts::*;
use crate::error::{Error, Result};

/// A command type; unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Read,
    Write,
    Disc,
    Flush,
    Trim,
    Cache,
    WriteZeroes,
    BlockStatus,
    Unknown(u16),
}

impl Command {
    /// From the wire value.
    pub fn from_u16(v: u16) -> Self {
        match v {
            NBD_CMD_READ => Command::Read,
            NBD_CMD_WRITE => Command::Write,
            NBD_CMD_DISC => Command::Disc,
            NBD_CMD_FLUSH => Command::Flush,
            NBD_CMD_TRIM => Command::Trim,
            NBD_CMD_CACHE => Command::Cache,
            NBD_CMD_WRITE_ZEROES => Command::WriteZeroes,
            NBD_CMD_BLOCK_STATUS => Command::BlockStatus,
            other => Command::Unknown(other),
        }
    }

    /// To the wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Command::Read => NBD_CMD_READ,
            Command::Write => NBD_CMD_WRITE,
            Command::Disc => NBD_CMD_DISC,
            Command::Flush => NBD_CMD_FLUSH,
            Command::Trim => NBD_CMD_TRIM,
            Command::Cache => NBD_CMD_CACHE,
            Command::WriteZeroes => NBD_CMD_WRITE_ZEROES,
            Command::BlockStatus => NBD_CMD_BLOCK_STATUS,
            Command::Unknown(v) => v,
        }
    }
}

/// A request header. For [`Command::Write`], `length` payload bytes follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `NBD_CMD_FLAG_*` bits.
    pub flags: u16,
    /// The command.
    pub command: Command,
    /// Opaque value echoed in the reply.
    pub cookie: u64,
    /// Byte offset into the export.
    pub offset: u64,
    /// Length in bytes.
    pub length: u32,
}

impl Request {
    /// Parses a 28-byte header; a wrong magic is [`Error::BadMagic`] (the stream is lost).
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf, "request header");
        let magic = r.u32()?;
        if magic != NBD_REQUEST_MAGIC {
            return Err(Error::BadMagic {
                structure: "request header",
                found: magic.into(),
            });
        }
        Ok(Self {
            flags: r.u16()?,
            command: Command::from_u16(r.u16()?),
            cookie: r.u64()?,
            offset: r.u64()?,
            length: r.u32()?,
        })
    }

    /// Appends the 28-byte header.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.command.to_u16().to_be_bytes());
        out.extend_from_slice(&self.cookie.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    /// Bytes of payload that follow the header on the wire.
    pub fn payload_len(&self) -> usize {
        if self.command == Command::Write {
            self.length as usize
        } else {
            0
        }
    }

    /// True when `flag` is set.
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_magic() {
        let req = Request {
            flags: NBD_CMD_FLAG_FUA,
            command: Command::Unknown(99),
            cookie: 7,
            offset: 1 << 33,
            length: 512,
        };
        let mut out = Vec::new();
        req.emit(&mut out);
        assert_eq!(out.len(), REQUEST_HEADER_LEN);
        assert_eq!(Request::parse(&out).unwrap(), req);
        out[0] ^= 1;
        assert!(matches!(Request::parse(&out), Err(Error::BadMagic { .. })));
        assert!(Request::parse(&out[..27]).is_err());
    }
}
