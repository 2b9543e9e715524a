//! Wire types: bytes <-> values for both directions of the handshake and of
//! transmission. Nothing here does I/O or keeps state.

pub mod consts;
pub mod errno;
pub mod option;
pub mod reply;
pub mod request;

use crate::error::{Error, Result};

/// A bounds-checked big-endian reader over a byte slice; every accessor fails with
/// [`Error::Truncated`] instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], structure: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            structure,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(Error::Truncated {
                structure: self.structure,
                need: self.pos.saturating_add(n),
                have: self.buf.len(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(
            self.bytes(2)?.try_into().unwrap_or_default(),
        ))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(
            self.bytes(4)?.try_into().unwrap_or_default(),
        ))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(
            self.bytes(8)?.try_into().unwrap_or_default(),
        ))
    }

    /// A string of `len` bytes: UTF-8, no NUL, at most 4096 bytes (§1.1).
    pub(crate) fn string(&mut self, len: usize, field: &'static str) -> Result<String> {
        if len > consts::MAX_STRING_LEN {
            return Err(Error::TooLong {
                structure: self.structure,
                len: len as u64,
                max: consts::MAX_STRING_LEN as u64,
            });
        }
        let structure = self.structure;
        let raw = self.bytes(len)?;
        let text =
            std::str::from_utf8(raw).map_err(|_| Error::invalid(structure, field, "not UTF-8"))?;
        if text.contains('\0') {
            return Err(Error::invalid(structure, field, "contains NUL"));
        }
        Ok(text.to_owned())
    }
}

/// Appends a string with a 32-bit length prefix.
pub(crate) fn put_str32(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}
