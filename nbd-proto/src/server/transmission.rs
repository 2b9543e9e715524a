//! The server side of transmission, without I/O: decoding request headers, checking
//! each request against what was negotiated (SPECS §1.5, §1.7), and building the reply
//! bytes of a request by calling the [`Export`](crate::Export).
//!
//! [`Transmission::route`] decides once, per request, how it is served (see [`Route`]):
//! one check against what was negotiated, and for a READ at most one
//! [`Export::locate`](crate::Export::locate). A driver follows that decision and
//! never checks or locates again, so the export sees each READ once (an export that
//! counts reads, as provisiond's sessions do, counts it once).
//!
//! [`Transmission::execute`] is synchronous and takes `&self`: a driver may run many at
//! once (on a blocking pool) and send the replies in whatever order they finish.

use crate::error::{Error, Result};
use crate::export::{Capabilities, Errno, Extent, Located, ZeroFlags};
use crate::server::handshake::Negotiated;
use crate::wire::consts::*;
use crate::wire::reply::{self, BlockDescriptor};
use crate::wire::request::{Command, Request};

/// Most descriptors sent in one BLOCK_STATUS chunk.
const MAX_DESCRIPTORS: usize = 1 << 16;
/// Holes shorter than this inside a structured READ are sent as data, not as chunks.
const MIN_HOLE_CHUNK: u64 = 4096;

/// What a checked request asks the export to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// READ; `df` = do not fragment.
    Read { offset: u64, len: u32, df: bool },
    /// WRITE of the payload.
    Write { offset: u64, len: u32, fua: bool },
    /// DISC: finish in-flight requests and close.
    Disconnect,
    /// FLUSH.
    Flush,
    /// TRIM.
    Trim { offset: u64, len: u32, fua: bool },
    /// CACHE.
    Cache { offset: u64, len: u32 },
    /// WRITE_ZEROES.
    WriteZeroes {
        offset: u64,
        len: u32,
        flags: ZeroFlags,
    },
    /// BLOCK_STATUS of `base:allocation`.
    BlockStatus {
        offset: u64,
        len: u32,
        req_one: bool,
        context: u32,
    },
}

/// How a request is served, decided once by [`Transmission::route`].
///
/// ```text
///  request --check--> refused -----------------------------------------> Reject
///           \-------> DISC --------------------------------------------> Disconnect
///            \------> READ --locate--> runs all resident, zero_copy on,
///             \                 |       and large or all in memory ---> ZeroCopy
///              \                |---> other runs ---------------------> Gather
///               \               '---> not located --------------------> Execute
///                '---> any other command ------------------------------> Execute
/// ```
#[derive(Debug)]
pub enum Route {
    /// Refused by the checks: reply with this error ([`Transmission::error_reply`]);
    /// the export is not called.
    Reject(Errno),
    /// DISC: no reply; finish the requests in flight and close.
    Disconnect,
    /// A READ whose reply goes out as these parts, as they are: headers as
    /// [`Located::Bytes`], the export's runs (file runs wholly in the page cache,
    /// zeros, bytes in memory) behind them. Only READs from
    /// [`RoutePolicy::zero_copy_min`] up, or whose runs are all in memory.
    ZeroCopy(Vec<Located>),
    /// A READ whose located reply parts are copied into one buffer
    /// ([`Transmission::gather_into`]); `blocking` when file runs are not wholly in
    /// the page cache (reading them waits for the disk).
    Gather {
        /// The reply's parts (see [`Transmission::plan_read`]).
        parts: Vec<Located>,
        /// True when copying them may wait for a disk.
        blocking: bool,
    },
    /// Calls the export ([`Transmission::execute_op`]); `blocking` for requests that
    /// may take long (flush, FUA, zeroing, trimming, transfers past
    /// [`RoutePolicy::inline_max_len`]).
    Execute {
        /// The checked request.
        op: Op,
        /// True when the export call may take long.
        blocking: bool,
    },
}

impl Route {
    /// True when the reply's data will sit in a buffer (every READ reply but one sent
    /// as [`Route::ZeroCopy`] parts): the driver's memory budget counts it.
    pub fn buffers_read(&self, req: &Request) -> bool {
        req.command == Command::Read && !matches!(self, Route::ZeroCopy(_))
    }
}

/// What a driver lets [`Transmission::route`] choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePolicy {
    /// Located READs may go out as [`Route::ZeroCopy`] parts (`sendfile(2)` for file
    /// runs).
    pub zero_copy: bool,
    /// READs from this length up are located for [`Route::ZeroCopy`].
    pub zero_copy_min: u32,
    /// Requests up to this length are cheap: reads, writes without FUA, block status
    /// and cache hints run without `blocking`; READs up to it are located, so that
    /// file bytes not in the page cache are read where waiting is harmless.
    pub inline_max_len: u32,
}

/// The transmission phase of one connection.
pub struct Transmission {
    neg: Negotiated,
    caps: Capabilities,
}

impl Transmission {
    /// Starts transmission with what the handshake agreed.
    pub fn new(neg: Negotiated) -> Self {
        let caps = neg.export.capabilities();
        Self { neg, caps }
    }

    /// What was negotiated.
    pub fn negotiated(&self) -> &Negotiated {
        &self.neg
    }

    /// Decodes a request header from the front of `buf`; `Ok(None)` until 28 bytes are
    /// there. A bad magic, or a WRITE payload beyond the advertised maximum, is a
    /// protocol violation: the connection must end.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<Request>> {
        let Some(head) = buf.get(..REQUEST_HEADER_LEN) else {
            return Ok(None);
        };
        let req = Request::parse(head)?;
        if req.command == Command::Write && req.length > self.neg.block_sizes.max {
            return Err(Error::TooLong {
                structure: "WRITE payload",
                len: req.length.into(),
                max: self.neg.block_sizes.max.into(),
            });
        }
        Ok(Some(req))
    }

    /// Checks a request; the error is the value to reply with (the connection goes on).
    pub fn check(&self, req: &Request) -> Result<Op, Errno> {
        if req.command == Command::Disc {
            // DISC never gets a reply, whatever its fields (§1.5).
            return Ok(Op::Disconnect);
        }
        let flags = self.neg.flags;
        let (offset, len) = (req.offset, req.length);
        let fua = req.has(NBD_CMD_FLAG_FUA);
        // Which command flags each command accepts (§1.5); FUA only when advertised.
        let mut allowed = if flags & NBD_FLAG_SEND_FUA != 0 {
            NBD_CMD_FLAG_FUA
        } else {
            0
        };
        allowed |= match req.command {
            Command::Read if self.neg.structured => NBD_CMD_FLAG_DF,
            Command::WriteZeroes => {
                NBD_CMD_FLAG_NO_HOLE
                    | if flags & NBD_FLAG_SEND_FAST_ZERO != 0 {
                        NBD_CMD_FLAG_FAST_ZERO
                    } else {
                        0
                    }
            }
            Command::BlockStatus => NBD_CMD_FLAG_REQ_ONE,
            _ => 0,
        };
        if req.flags & !allowed != 0 {
            return Err(Errno::EINVAL);
        }
        let read_only = self.caps.contains(Capabilities::READ_ONLY);
        let end = offset.checked_add(len.into());
        let inside = end.is_some_and(|e| e <= self.neg.size);
        let aligned = self.neg.block_sizes.min <= 1
            || (offset % u64::from(self.neg.block_sizes.min) == 0
                && len % self.neg.block_sizes.min == 0);
        // Range rules shared by the commands that take one: length 0 and misalignment are
        // EINVAL; past the end is EINVAL, or ENOSPC for the writing commands.
        let range = |past_end: Errno| {
            if len == 0 || !aligned {
                Err(Errno::EINVAL)
            } else if !inside {
                Err(past_end)
            } else {
                Ok(())
            }
        };
        let need = |cap: Capabilities| {
            if self.caps.contains(cap) {
                Ok(())
            } else {
                Err(Errno::EINVAL)
            }
        };
        let writable = || if read_only { Err(Errno::EPERM) } else { Ok(()) };
        Ok(match req.command {
            Command::Read => {
                range(Errno::EINVAL)?;
                if len > self.neg.block_sizes.max {
                    return Err(Errno::EINVAL);
                }
                Op::Read {
                    offset,
                    len,
                    df: req.has(NBD_CMD_FLAG_DF),
                }
            }
            Command::Write => {
                writable()?;
                range(Errno::ENOSPC)?;
                Op::Write { offset, len, fua }
            }
            Command::Disc => Op::Disconnect,
            Command::Flush => {
                need(Capabilities::FLUSH)?;
                Op::Flush
            }
            Command::Trim => {
                need(Capabilities::TRIM)?;
                writable()?;
                range(Errno::EINVAL)?;
                Op::Trim { offset, len, fua }
            }
            Command::Cache => {
                need(Capabilities::CACHE)?;
                range(Errno::EINVAL)?;
                Op::Cache { offset, len }
            }
            Command::WriteZeroes => {
                need(Capabilities::WRITE_ZEROES)?;
                writable()?;
                range(Errno::ENOSPC)?;
                let flags = ZeroFlags {
                    fua,
                    no_hole: req.has(NBD_CMD_FLAG_NO_HOLE),
                    fast: req.has(NBD_CMD_FLAG_FAST_ZERO),
                };
                Op::WriteZeroes { offset, len, flags }
            }
            Command::BlockStatus => {
                let context = self.neg.base_allocation.ok_or(Errno::EINVAL)?;
                range(Errno::EINVAL)?;
                Op::BlockStatus {
                    offset,
                    len,
                    req_one: req.has(NBD_CMD_FLAG_REQ_ONE),
                    context,
                }
            }
            Command::Unknown(_) => return Err(Errno::EINVAL),
        })
    }

    /// Runs one request (`payload` is the WRITE data, empty otherwise) and returns the
    /// complete reply bytes. DISC has no reply: it returns an empty vector.
    pub fn execute(&self, req: &Request, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.execute_into(req, payload, &mut out);
        out
    }

    /// Like [`Transmission::execute`], replacing the contents of `out` by the reply.
    /// A driver reuses `out` between requests: READ data lands in memory that is
    /// already mapped, and bytes `out` already holds are overwritten, never zeroed first.
    pub fn execute_into(&self, req: &Request, payload: &[u8], out: &mut Vec<u8>) {
        match self.check(req) {
            Ok(op) => self.execute_op(req, op, payload, out),
            Err(errno) => {
                out.clear();
                self.error_into(req, errno, None, out);
            }
        }
    }

    /// Decides how `req` is served: checks it once and, for a READ the policy may
    /// send from located runs, asks the export to [locate](crate::Export::locate) its
    /// bytes once. `resident` tells whether a located run can be sent without waiting
    /// for a disk (the driver asks the kernel; a sans-IO caller answers as it likes).
    /// The driver then follows the route: it never checks or locates the request
    /// again.
    pub fn route(
        &self,
        req: &Request,
        policy: &RoutePolicy,
        resident: impl Fn(&Located) -> bool,
    ) -> Route {
        let op = match self.check(req) {
            Ok(Op::Disconnect) => return Route::Disconnect,
            Ok(op) => op,
            Err(errno) => return Route::Reject(errno),
        };
        let small = req.length <= policy.inline_max_len;
        if let Op::Read { offset, len, df } = op {
            let large = policy.zero_copy && len >= policy.zero_copy_min;
            if (large || small)
                && let Some(runs) = self.locate(offset, len.into())
            {
                let parts = self.plan(req.cookie, offset, df, runs);
                let warm = parts.iter().all(resident);
                // Runs already in memory (a RAM write cache's chunks, zeros) go out as
                // they are at any length: gathering them would copy them once more.
                let in_memory = || !parts.iter().any(|p| matches!(p, Located::File { .. }));
                return if warm && (large || policy.zero_copy && in_memory()) {
                    Route::ZeroCopy(parts)
                } else {
                    Route::Gather {
                        parts,
                        blocking: !warm,
                    }
                };
            }
        }
        let cheap = match req.command {
            Command::Read | Command::BlockStatus | Command::Cache => small,
            Command::Write => small && !req.has(NBD_CMD_FLAG_FUA),
            _ => false,
        };
        Route::Execute {
            op,
            blocking: !cheap,
        }
    }

    /// Runs a request [`Transmission::check`] (or [`Transmission::route`]) accepted
    /// as `op`, replacing the contents of `out` by the reply (see `execute_into`).
    pub fn execute_op(&self, req: &Request, op: Op, payload: &[u8], out: &mut Vec<u8>) {
        if let Op::Read { offset, len, df } = op {
            return self.read(req.cookie, offset, len, df, out);
        }
        out.clear();
        let export = &*self.neg.export;
        let mut done = |r: Result<(), Errno>| match r {
            Ok(()) => reply::emit_simple(out, req.cookie, Errno(0)),
            Err(e) => self.error_into(req, e, None, out),
        };
        match op {
            Op::Read { .. } => {}
            Op::Write { offset, fua, .. } => done(export.write(payload, offset, fua)),
            Op::Disconnect => {}
            Op::Flush => done(export.flush()),
            Op::Trim { offset, len, fua } => done(export.trim(offset, len.into(), fua)),
            Op::Cache { offset, len } => done(export.cache(offset, len.into())),
            Op::WriteZeroes { offset, len, flags } => {
                if flags.fast && !self.caps.contains(Capabilities::FAST_ZERO) {
                    return done(Err(Errno::ENOTSUP));
                }
                let r = export.write_zeroes(offset, len.into(), flags);
                // Without FAST_ZERO the reply must not be ENOTSUP (§1.5).
                done(r.map_err(|e| {
                    if e == Errno::ENOTSUP && !flags.fast {
                        Errno::EIO
                    } else {
                        e
                    }
                }))
            }
            Op::BlockStatus {
                offset,
                len,
                req_one,
                context,
            } => match export.block_status(offset, len.into()) {
                Ok(extents) => {
                    let d = descriptors(&extents, len, req_one);
                    reply::emit_block_status(out, true, req.cookie, context, &d);
                }
                Err(e) => self.error_into(req, e, None, out),
            },
        }
    }

    /// The reply for a failed request: structured for READ and BLOCK_STATUS when
    /// structured replies are on (READ must be; §1.5), simple otherwise.
    pub fn error_reply(&self, req: &Request, errno: Errno, offset: Option<u64>) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.error_into(req, errno, offset, &mut out);
        out
    }

    fn error_into(&self, req: &Request, errno: Errno, offset: Option<u64>, out: &mut Vec<u8>) {
        let errno = if errno.0 == 0 { Errno::EIO } else { errno };
        if self.neg.structured && matches!(req.command, Command::Read | Command::BlockStatus) {
            reply::emit_error_chunk(out, req.cookie, errno, errno.name(), offset);
        } else {
            reply::emit_simple(out, req.cookie, errno);
        }
    }

    /// A structured READ's chunks as (is_hole, relative offset, length): holes as
    /// OFFSET_HOLE chunks (not with DF), data as OFFSET_DATA.
    fn chunks(&self, offset: u64, len: u64, df: bool) -> Vec<(bool, u64, u64)> {
        if df {
            return vec![(false, 0, len)];
        }
        let extents = self.neg.export.block_status(offset, len);
        read_segments(extents.unwrap_or_default(), len)
    }

    /// A READ's reply as parts to send in order, when the export can locate its bytes
    /// (see [`Export::locate`](crate::Export::locate)): reply headers as
    /// [`Located::Bytes`], the data as the export's runs; in structured replies, zero
    /// runs of 4 KiB and more are sent as holes (no `block_status` call needed).
    /// `None` for any other request, a request that fails its checks, or bytes the
    /// export cannot locate: build the reply with [`Transmission::execute_into`] then.
    pub fn plan_read(&self, req: &Request) -> Option<Vec<Located>> {
        let Ok(Op::Read { offset, len, df }) = self.check(req) else {
            return None;
        };
        let runs = self.locate(offset, len.into())?;
        Some(self.plan(req.cookie, offset, df, runs))
    }

    /// A READ reply's parts around the export's `runs` for `[offset, ..)` (see
    /// [`Transmission::plan_read`]).
    fn plan(&self, cookie: u64, offset: u64, df: bool, runs: Vec<Located>) -> Vec<Located> {
        let mut parts = Vec::with_capacity(runs.len() + 2);
        if !self.neg.structured {
            let mut head = Vec::with_capacity(SIMPLE_REPLY_HEADER_LEN);
            reply::emit_simple(&mut head, cookie, Errno(0));
            parts.push(Located::Bytes(head));
            parts.extend(runs);
            return parts;
        }
        // Chunks: zero runs long enough become OFFSET_HOLE (not with DF), everything
        // between them one OFFSET_DATA each. (start, length, runs; no runs = hole)
        let mut chunks: Vec<(u64, u64, Vec<Located>)> = Vec::new();
        let mut pos = 0;
        for run in runs {
            let n = run.len();
            let hole = !df && matches!(run, Located::Zeros(_)) && n >= MIN_HOLE_CHUNK;
            match chunks.last_mut() {
                Some((_, len, data)) if !hole && !data.is_empty() => {
                    *len += n;
                    data.push(run);
                }
                _ if hole => chunks.push((pos, n, Vec::new())),
                _ => chunks.push((pos, n, vec![run])),
            }
            pos += n;
        }
        let count = chunks.len();
        for (i, (rel, n, data)) in chunks.into_iter().enumerate() {
            let last = i + 1 == count;
            let at = offset + rel;
            let mut head = Vec::with_capacity(STRUCTURED_REPLY_HEADER_LEN + 12);
            if data.is_empty() {
                reply::emit_offset_hole(&mut head, last, cookie, at, n as u32);
                parts.push(Located::Bytes(head));
            } else {
                reply::emit_offset_data_header(&mut head, last, cookie, at, n as u32);
                parts.push(Located::Bytes(head));
                parts.extend(data);
            }
        }
        parts
    }

    /// A planned READ reply ([`Route::Gather`], [`Transmission::plan_read`]) copied
    /// into `out` (its old contents replaced), reading the file runs; a file that
    /// cannot be read makes the reply an EIO error.
    pub fn gather_into(&self, req: &Request, parts: Vec<Located>, out: &mut Vec<u8>) {
        use std::os::unix::fs::FileExt;
        out.clear();
        out.reserve(parts.iter().map(Located::len).sum::<u64>() as usize);
        for part in parts {
            match part {
                Located::Bytes(b) => out.extend_from_slice(&b),
                Located::Zeros(n) => out.resize(out.len() + n as usize, 0),
                Located::File { file, offset, len } => {
                    let at = out.len();
                    out.resize(at + len as usize, 0);
                    if let Err(e) = file.read_exact_at(&mut out[at..], offset) {
                        tracing::warn!(offset, len, error = %e, "reading a located run failed");
                        out.clear();
                        return self.error_into(req, Errno::EIO, None, out);
                    }
                }
            }
        }
    }

    /// The export's runs for a range, if it names them and they cover it exactly.
    fn locate(&self, offset: u64, len: u64) -> Option<Vec<Located>> {
        let runs = self.neg.export.locate(offset, len)?;
        let covered: u64 = runs.iter().map(Located::len).sum();
        (covered == len).then_some(runs)
    }

    /// A READ reply in `out` (old contents reused as scratch, see `execute_into`).
    fn read(&self, cookie: u64, offset: u64, len: u32, df: bool, out: &mut Vec<u8>) {
        let export = &*self.neg.export;
        let len64 = u64::from(len);
        if !self.neg.structured {
            set_len(out, SIMPLE_REPLY_HEADER_LEN + len as usize);
            let mut head = Vec::with_capacity(SIMPLE_REPLY_HEADER_LEN);
            reply::emit_simple(&mut head, cookie, Errno(0));
            out[..SIMPLE_REPLY_HEADER_LEN].copy_from_slice(&head);
            if let Err(e) = export.read(&mut out[SIMPLE_REPLY_HEADER_LEN..], offset) {
                out.clear();
                reply::emit_simple(out, cookie, e);
            }
            return;
        }
        let segments = self.chunks(offset, len64, df);
        let chunk = STRUCTURED_REPLY_HEADER_LEN as u64;
        let heads: u64 = segments
            .iter()
            .map(|&(hole, _, _)| if hole { chunk + 12 } else { chunk + 8 })
            .sum();
        // One read of the whole range (the export sees each READ once, as it was
        // asked, whatever its holes), behind room for every chunk header; each data
        // segment then moves down into place behind its header. A header or a moved
        // segment never reaches bytes still to move: everything before a segment's
        // source is at most every header plus the data before it.
        let base = heads as usize;
        set_len(out, base + len as usize);
        if let Err(e) = export.read(&mut out[base..], offset) {
            // Nothing is sent yet: replace the whole reply by one error chunk.
            out.clear();
            reply::emit_error_chunk(out, cookie, e, e.name(), Some(offset));
            return;
        }
        let mut head = Vec::with_capacity(32);
        let mut pos = 0;
        for (i, &(hole, rel, n)) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let at = offset + rel;
            head.clear();
            if hole {
                reply::emit_offset_hole(&mut head, last, cookie, at, n as u32);
            } else {
                reply::emit_offset_data_header(&mut head, last, cookie, at, n as u32);
            }
            out[pos..pos + head.len()].copy_from_slice(&head);
            pos += head.len();
            if !hole {
                let from = base + rel as usize;
                out.copy_within(from..from + n as usize, pos);
                pos += n as usize;
            }
        }
        out.truncate(pos);
    }
}

/// Makes `out` exactly `len` bytes long, zero-filling only bytes it never held.
fn set_len(out: &mut Vec<u8>, len: usize) {
    if out.len() < len {
        out.resize(len, 0);
    } else {
        out.truncate(len);
    }
}

/// Splits a READ of `len` bytes into (is_hole, relative offset, length) segments from
/// an allocation map: short holes are folded into data, neighbours merged, and any
/// part the map does not cover is data.
fn read_segments(extents: Vec<Extent>, len: u64) -> Vec<(bool, u64, u64)> {
    let mut out: Vec<(bool, u64, u64)> = Vec::new();
    let mut pos = 0u64;
    for e in extents {
        if pos >= len {
            break;
        }
        let n = e.length.min(len - pos);
        if n == 0 {
            continue;
        }
        let hole = e.is_zero() && n >= MIN_HOLE_CHUNK;
        match out.last_mut() {
            Some(last) if last.0 == hole => last.2 += n,
            _ => out.push((hole, pos, n)),
        }
        pos += n;
    }
    if pos < len {
        match out.last_mut() {
            Some(last) if !last.0 => last.2 += len - pos,
            _ => out.push((false, pos, len - pos)),
        }
    }
    out
}

/// Turns an export's extents into wire descriptors for a request of `len` bytes:
/// zero-length extents dropped, neighbours with equal flags merged, clipped to the
/// request, at least one descriptor, exactly one with REQ_ONE.
fn descriptors(extents: &[Extent], len: u32, req_one: bool) -> Vec<BlockDescriptor> {
    let mut out: Vec<BlockDescriptor> = Vec::new();
    let mut pos = 0u64;
    for e in extents {
        if pos >= u64::from(len) || out.len() >= MAX_DESCRIPTORS {
            break;
        }
        let n = e.length.min(u64::from(len) - pos) as u32;
        if n == 0 {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.flags == e.flags => last.length += n,
            _ => out.push(BlockDescriptor {
                length: n,
                flags: e.flags,
            }),
        }
        pos += u64::from(n);
    }
    if out.is_empty() {
        out.push(BlockDescriptor {
            length: len,
            flags: 0,
        });
    }
    if req_one {
        out.truncate(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_merge_clip_and_never_empty() {
        let e = [
            Extent::data(100),
            Extent::data(0),
            Extent::data(28),
            Extent::hole(1000),
        ];
        let d = descriptors(&e, 512, false);
        assert_eq!(
            d,
            vec![
                BlockDescriptor {
                    length: 128,
                    flags: 0
                },
                BlockDescriptor {
                    length: 384,
                    flags: 3
                }
            ]
        );
        assert_eq!(descriptors(&e, 512, true).len(), 1);
        assert_eq!(
            descriptors(&[], 7, false),
            vec![BlockDescriptor {
                length: 7,
                flags: 0
            }]
        );
    }

    #[test]
    fn stale_reply_buffers_never_leak_into_replies() {
        use crate::export::{BlockSizes, MemoryExport};
        let mut data = vec![0u8; 1 << 16];
        data[..5000].fill(7);
        for structured in [false, true] {
            let neg = Negotiated {
                export: std::sync::Arc::new(MemoryExport::new(data.clone())),
                name: "d".into(),
                size: 1 << 16,
                flags: NBD_FLAG_HAS_FLAGS,
                block_sizes: BlockSizes::default(),
                structured,
                base_allocation: None,
            };
            let t = Transmission::new(neg);
            for (offset, length) in [(0, 1 << 16), (100, 9000), (4096, 1), (60_000, 5536)] {
                let req = Request {
                    flags: 0,
                    command: Command::Read,
                    cookie: 5,
                    offset,
                    length,
                };
                let mut stale = vec![0xff; 70_000];
                t.execute_into(&req, &[], &mut stale);
                assert_eq!(
                    stale,
                    t.execute(&req, &[]),
                    "{req:?} structured={structured}"
                );
            }
            let flush = Request {
                flags: 0,
                command: Command::Flush,
                cookie: 6,
                offset: 0,
                length: 0,
            };
            let mut stale = vec![0xff; 100];
            t.execute_into(&flush, &[], &mut stale);
            assert_eq!(stale.len(), SIMPLE_REPLY_HEADER_LEN);
        }
    }

    /// Bytes in memory that it locates (as `Located::Bytes`, zeros as `Zeros`), and
    /// counts the calls that reach it.
    struct Located2 {
        data: Vec<u8>,
        locates: std::sync::atomic::AtomicU32,
        reads: std::sync::atomic::AtomicU32,
    }

    impl crate::Export for Located2 {
        fn size(&self) -> u64 {
            self.data.len() as u64
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::FUA
        }
        fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            buf.copy_from_slice(&self.data[offset as usize..][..buf.len()]);
            Ok(())
        }
        fn write(&self, _data: &[u8], _offset: u64, _fua: bool) -> Result<(), Errno> {
            Ok(())
        }
        fn locate(&self, offset: u64, len: u64) -> Option<Vec<Located>> {
            self.locates
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let bytes = &self.data[offset as usize..][..len as usize];
            Some(if bytes.iter().all(|&b| b == 0) {
                vec![Located::Zeros(len)]
            } else {
                vec![Located::Bytes(bytes.to_vec())]
            })
        }
    }

    #[test]
    fn each_request_is_routed_once_and_its_route_replies_as_execute_does() {
        use crate::export::BlockSizes;
        use std::sync::atomic::Ordering::Relaxed;
        let export = std::sync::Arc::new(Located2 {
            data: (0..1u32 << 20).map(|i| (i % 251) as u8).collect(),
            locates: Default::default(),
            reads: Default::default(),
        });
        let t = Transmission::new(Negotiated {
            export: export.clone(),
            name: "d".into(),
            size: 1 << 20,
            flags: NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FUA,
            block_sizes: BlockSizes::default(),
            structured: false,
            base_allocation: None,
        });
        let policy = RoutePolicy {
            zero_copy: true,
            zero_copy_min: 16 << 10,
            inline_max_len: 64 << 10,
        };
        let req = |command, flags, offset, length| Request {
            flags,
            command,
            cookie: 9,
            offset,
            length,
        };
        let read = |offset, length| req(Command::Read, 0, offset, length);
        let calls = || (export.locates.load(Relaxed), export.reads.load(Relaxed));
        // (request, policy, resident, the route's name, locates it makes)
        let no_zero_copy = RoutePolicy {
            zero_copy: false,
            ..policy
        };
        let cases = [
            (read(0, 4096), policy, true, "zero-copy", 1),
            (read(0, 4096), policy, false, "gather blocking", 1),
            (read(0, 64 << 10), policy, true, "zero-copy", 1),
            (read(0, 128 << 10), policy, false, "gather blocking", 1),
            (
                read(0, 128 << 10),
                no_zero_copy,
                true,
                "execute blocking",
                0,
            ),
            (read(0, 4096), no_zero_copy, true, "gather", 1),
            (read(1 << 20, 1), policy, true, "reject", 0),
            (req(Command::Write, 0, 0, 512), policy, true, "execute", 0),
            (
                req(Command::Write, NBD_CMD_FLAG_FUA, 0, 512),
                policy,
                true,
                "execute blocking",
                0,
            ),
            (req(Command::Flush, 0, 0, 0), policy, true, "reject", 0),
            (req(Command::Disc, 0, 0, 0), policy, true, "disconnect", 0),
        ];
        for (req, policy, resident, want, locates) in cases {
            let before = calls();
            let route = t.route(&req, &policy, |_| resident);
            let name = match &route {
                Route::Reject(_) => "reject",
                Route::Disconnect => "disconnect",
                Route::ZeroCopy(_) => "zero-copy",
                Route::Gather {
                    blocking: false, ..
                } => "gather",
                Route::Gather { blocking: true, .. } => "gather blocking",
                Route::Execute {
                    blocking: false, ..
                } => "execute",
                Route::Execute { blocking: true, .. } => "execute blocking",
            };
            assert_eq!(name, want, "{req:?} resident={resident}");
            // Following the route gives execute's bytes, with no second locate and
            // no read of a located READ.
            let mut out = Vec::new();
            match route {
                Route::ZeroCopy(parts) | Route::Gather { parts, .. } => {
                    t.gather_into(&req, parts, &mut out)
                }
                Route::Execute { op, .. } => t.execute_op(&req, op, &[0; 512], &mut out),
                Route::Reject(errno) => out = t.error_reply(&req, errno, None),
                Route::Disconnect => {}
            }
            let (located, read) = (calls().0 - before.0, calls().1 - before.1);
            assert_eq!(located, locates, "{req:?}: locates");
            let reads = u32::from(req.command == Command::Read && want != "reject");
            assert_eq!(located + read, reads, "{req:?}: reads of the export");
            assert_eq!(out, t.execute(&req, &[0; 512]), "{req:?}: reply bytes");
        }
    }

    #[test]
    fn read_segments_fold_small_holes_and_cover_the_range() {
        let e = vec![
            Extent::data(512),
            Extent::hole(512),
            Extent::data(512),
            Extent::hole(8192),
        ];
        let s = read_segments(e, 10_000);
        assert_eq!(
            s,
            vec![(false, 0, 1536), (true, 1536, 8192), (false, 9728, 272)]
        );
    }
}
