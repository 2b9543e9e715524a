//! The client side of transmission, without I/O: requests are encoded with fresh
//! cookies, and replies (simple or structured, in any order) are matched back to them.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::export::Errno;
use crate::wire::consts::*;
use crate::wire::reply::{BlockDescriptor, ReplyHeader, parse_block_status, parse_error_payload};
use crate::wire::request::{Command, Request};

/// A finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The cookie returned by [`ClientTransmission::request`].
    pub cookie: u64,
    /// READ data or block status descriptors, or the server's error.
    pub result: Result<Reply, Errno>,
}

/// The successful result of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// READ data.
    pub data: Vec<u8>,
    /// BLOCK_STATUS descriptors.
    pub extents: Vec<BlockDescriptor>,
}

struct Pending {
    command: Command,
    offset: u64,
    /// READ length (0 for other commands).
    length: usize,
    /// READ data, allocated when the first data arrives (no zero-filling of bytes a
    /// reply overwrites anyway).
    data: Vec<u8>,
    extents: Vec<BlockDescriptor>,
    error: Option<Errno>,
}

/// The client side of one connection's transmission phase.
pub struct ClientTransmission {
    structured: bool,
    next_cookie: u64,
    pending: HashMap<u64, Pending>,
}

impl ClientTransmission {
    /// Starts transmission; `structured` as negotiated.
    pub fn new(structured: bool) -> Self {
        Self {
            structured,
            next_cookie: 1,
            pending: HashMap::new(),
        }
    }

    /// Requests waiting for their reply.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Appends a request (and the WRITE payload) to `out`; returns its cookie. DISC
    /// gets no reply and is not tracked.
    pub fn request(
        &mut self,
        command: Command,
        flags: u16,
        offset: u64,
        length: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> u64 {
        let cookie = self.next_cookie;
        self.next_cookie = self.next_cookie.wrapping_add(1);
        Request {
            flags,
            command,
            cookie,
            offset,
            length,
        }
        .emit(out);
        out.extend_from_slice(payload);
        if command != Command::Disc {
            let length = if command == Command::Read {
                length as usize
            } else {
                0
            };
            self.pending.insert(
                cookie,
                Pending {
                    command,
                    offset,
                    length,
                    data: Vec::new(),
                    extents: Vec::new(),
                    error: None,
                },
            );
        }
        cookie
    }

    /// How many bytes of input the next reply (or chunk) needs in all, as far as the
    /// header at the start of `input` tells; `input.len()` when it cannot tell. A
    /// driver makes room for that much once, instead of growing its buffer (and
    /// moving the bytes already in it) while a large READ reply arrives.
    pub fn wanted(&self, input: &[u8]) -> usize {
        let Some(hlen) = input.get(..4).and_then(|m| ReplyHeader::header_len(m).ok()) else {
            return input.len().max(4);
        };
        let Some(header) = input.get(..hlen).and_then(|h| ReplyHeader::parse(h).ok()) else {
            return input.len().max(hlen);
        };
        match header {
            ReplyHeader::Simple { error, cookie } => match self.pending.get(&cookie) {
                Some(p) if error.0 == 0 && p.command == Command::Read && !self.structured => {
                    hlen + p.length
                }
                _ => hlen,
            },
            ReplyHeader::Structured { len, .. } => hlen + len as usize,
        }
    }

    /// When the reply at the start of `input` carries all the data of a READ (a simple
    /// reply, or one OFFSET_DATA chunk covering the whole request) and `input` holds
    /// its header: the header's length (with the chunk's offset field) and the
    /// payload's. A driver may then read the payload from its socket straight into a
    /// buffer of its own and hand both to [`ClientTransmission::complete_direct`],
    /// instead of gathering it in its input buffer to be copied.
    pub fn direct_payload(&self, input: &[u8]) -> Option<(usize, usize)> {
        self.whole_read(input).map(|(_, head, n)| (head, n))
    }

    /// [`ClientTransmission::direct_payload`] with the parsed header.
    fn whole_read(&self, input: &[u8]) -> Option<(ReplyHeader, usize, usize)> {
        let hlen = ReplyHeader::header_len(input.get(..4)?).ok()?;
        let header = ReplyHeader::parse(input.get(..hlen)?).ok()?;
        let p = self.pending.get(&header.cookie())?;
        if p.command != Command::Read || p.length == 0 || !p.data.is_empty() {
            return None;
        }
        let head = match header {
            ReplyHeader::Simple { error, .. } if error.0 == 0 && !self.structured => hlen,
            ReplyHeader::Structured {
                chunk_type: NBD_REPLY_TYPE_OFFSET_DATA,
                len,
                ..
            } => {
                let offset = input.get(hlen..hlen + 8)?;
                let whole = u64::from_be_bytes(offset.try_into().ok()?) == p.offset
                    && len as usize == 8 + p.length;
                whole.then_some(hlen + 8)?
            }
            _ => return None,
        };
        Some((header, head, p.length))
    }

    /// Consumes the reply whose header is `head` and whose payload the driver read
    /// into `data`, as [`ClientTransmission::direct_payload`] described them; returns
    /// the completion when the request finished.
    pub fn complete_direct(&mut self, head: &[u8], data: Vec<u8>) -> Result<Option<Completion>> {
        let header = match self.whole_read(head) {
            Some((header, hlen, n)) if hlen == head.len() && n == data.len() => header,
            _ => {
                return Err(Error::invalid(
                    "reply",
                    "payload",
                    "not a whole READ payload",
                ));
            }
        };
        let cookie = header.cookie();
        let done = match header {
            ReplyHeader::Simple { .. } => true,
            ReplyHeader::Structured { flags, .. } => flags & NBD_REPLY_FLAG_DONE != 0,
        };
        let p = self.pending.get_mut(&cookie).expect("checked above");
        p.data = data;
        if !done {
            return Ok(None);
        }
        let p = self.pending.remove(&cookie).expect("checked above");
        let error = p.error;
        Ok(Some(finish(cookie, p, error)))
    }

    /// Consumes at most one reply (or chunk) from `input`; returns the bytes used and a
    /// completion when a request finished. Errors are protocol violations by the server.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<(usize, Option<Completion>)> {
        let Some(first) = input.get(..4) else {
            return Ok((0, None));
        };
        let hlen = ReplyHeader::header_len(first)?;
        let Some(head) = input.get(..hlen) else {
            return Ok((0, None));
        };
        let header = ReplyHeader::parse(head)?;
        let cookie = header.cookie();
        let Some(p) = self.pending.get_mut(&cookie) else {
            return Err(Error::invalid(
                "reply",
                "cookie",
                format!("unknown cookie {cookie:#x}"),
            ));
        };
        match header {
            ReplyHeader::Simple { error, .. } => {
                let mut used = hlen;
                if error.0 == 0 && p.command == Command::Read {
                    if self.structured {
                        return Err(Error::invalid(
                            "reply",
                            "type",
                            "simple reply to READ with structured replies",
                        ));
                    }
                    let n = p.length;
                    let Some(data) = input.get(hlen..hlen + n) else {
                        return Ok((0, None));
                    };
                    p.data = data.to_vec();
                    used += n;
                }
                let p = self.pending.remove(&cookie).expect("present");
                Ok((
                    used,
                    Some(finish(cookie, p, (error.0 != 0).then_some(error))),
                ))
            }
            ReplyHeader::Structured {
                flags,
                chunk_type,
                len,
                ..
            } => {
                let max = p.length as u64 + 4096 + (8u64 << 20);
                if u64::from(len) > max {
                    return Err(Error::TooLong {
                        structure: "reply chunk",
                        len: len.into(),
                        max,
                    });
                }
                let total = hlen + len as usize;
                let Some(payload) = input.get(hlen..total) else {
                    return Ok((0, None));
                };
                chunk(p, chunk_type, payload)?;
                if flags & NBD_REPLY_FLAG_DONE == 0 {
                    return Ok((total, None));
                }
                let p = self.pending.remove(&cookie).expect("present");
                let error = p.error;
                Ok((total, Some(finish(cookie, p, error))))
            }
        }
    }
}

fn finish(cookie: u64, mut p: Pending, error: Option<Errno>) -> Completion {
    // Whatever no chunk covered reads as zeros.
    p.data.resize(p.length, 0);
    let result = match error {
        Some(e) => Err(e),
        None => Ok(Reply {
            data: p.data,
            extents: p.extents,
        }),
    };
    Completion { cookie, result }
}

/// Applies one structured chunk to its pending request.
fn chunk(p: &mut Pending, chunk_type: u16, payload: &[u8]) -> Result<()> {
    let place = |p: &mut Pending, offset: u64, n: usize| -> Result<std::ops::Range<usize>> {
        let rel = offset.checked_sub(p.offset).map(|r| r as usize);
        match rel.and_then(|r| r.checked_add(n).map(|e| r..e)) {
            Some(range) if range.end <= p.length => Ok(range),
            _ => Err(Error::invalid(
                "reply chunk",
                "offset",
                "outside the request",
            )),
        }
    };
    match chunk_type {
        NBD_REPLY_TYPE_NONE => {}
        NBD_REPLY_TYPE_OFFSET_DATA => {
            let off = payload.get(..8).ok_or(Error::Truncated {
                structure: "OFFSET_DATA",
                need: 8,
                have: payload.len(),
            })?;
            let offset = u64::from_be_bytes(off.try_into().unwrap_or_default());
            let range = place(p, offset, payload.len() - 8)?;
            if p.data.is_empty() && range == (0..p.length) {
                p.data = payload[8..].to_vec();
            } else {
                p.data.resize(p.length, 0);
                p.data[range].copy_from_slice(&payload[8..]);
            }
        }
        NBD_REPLY_TYPE_OFFSET_HOLE => {
            if payload.len() != 12 {
                return Err(Error::invalid("OFFSET_HOLE", "length", "not 12"));
            }
            let offset = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
            let size = u32::from_be_bytes(payload[8..].try_into().unwrap_or_default());
            let range = place(p, offset, size as usize)?;
            p.data.resize(p.length, 0);
            p.data[range].fill(0);
        }
        NBD_REPLY_TYPE_BLOCK_STATUS => {
            let (_, extents) = parse_block_status(payload)?;
            p.extents.extend(extents);
        }
        t if t & 0x8000 != 0 => {
            let (errno, _) = parse_error_payload(payload)?;
            p.error = Some(if errno.0 == 0 { Errno::EIO } else { errno });
        }
        other => {
            return Err(Error::invalid(
                "reply chunk",
                "type",
                format!("unknown type {other}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::reply::{emit_offset_data_header, emit_offset_hole, emit_simple};

    /// The same replies, once through `handle_input` and once with the payload read
    /// "directly": identical completions; and what is not a whole payload is not
    /// offered directly.
    #[test]
    fn direct_payloads_complete_like_buffered_ones() {
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        for structured in [false, true] {
            let mut a = ClientTransmission::new(structured);
            let mut b = ClientTransmission::new(structured);
            let mut out = Vec::new();
            let cookie = a.request(Command::Read, 0, 4096, 5000, &[], &mut out);
            b.request(Command::Read, 0, 4096, 5000, &[], &mut out);
            let mut head = Vec::new();
            if structured {
                emit_offset_data_header(&mut head, true, cookie, 4096, 5000);
            } else {
                emit_simple(&mut head, cookie, Errno(0));
            }
            let mut whole = head.clone();
            whole.extend_from_slice(&data);
            let (used, buffered) = a.handle_input(&whole).unwrap();
            assert_eq!(used, whole.len());
            assert_eq!(b.direct_payload(&head), Some((head.len(), 5000)));
            let direct = b.complete_direct(&head, data.clone()).unwrap();
            assert_eq!(direct, buffered);
            assert_eq!(direct.unwrap().result.unwrap().data, data);
            assert_eq!(b.in_flight(), 0);
        }
        // A chunk covering part of the request, or a hole, is not a whole payload.
        let mut t = ClientTransmission::new(true);
        let mut out = Vec::new();
        let cookie = t.request(Command::Read, 0, 0, 8192, &[], &mut out);
        let mut head = Vec::new();
        emit_offset_data_header(&mut head, false, cookie, 0, 4096);
        assert_eq!(t.direct_payload(&head), None);
        assert!(t.complete_direct(&head, vec![0; 4096]).is_err());
        head.clear();
        emit_offset_hole(&mut head, true, cookie, 0, 8192);
        assert_eq!(t.direct_payload(&head), None);
    }
}
