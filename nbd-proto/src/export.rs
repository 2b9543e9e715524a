//! What a server serves: the [`Export`] trait (a block device seen through positional,
//! synchronous calls) and the [`ExportProvider`] that picks one per connection.
//!
//! Calls are synchronous and take `&self`: the driver runs them on a blocking pool, many
//! at once for one connection, so implementations must be `Send + Sync` and must not hold
//! a global lock across I/O.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;

use bitflags::bitflags;

use crate::wire::consts::*;
pub use crate::wire::errno::Errno;

bitflags! {
    /// What an export supports beyond READ; each becomes a transmission flag (§1.4),
    /// advertised only when set.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Capabilities: u32 {
        /// Writes are refused with EPERM.
        const READ_ONLY = 1 << 0;
        /// FLUSH is meaningful.
        const FLUSH = 1 << 1;
        /// FUA on writes is honoured.
        const FUA = 1 << 2;
        /// TRIM is supported.
        const TRIM = 1 << 3;
        /// WRITE_ZEROES is supported (NO_HOLE included).
        const WRITE_ZEROES = 1 << 4;
        /// WRITE_ZEROES with FAST_ZERO is answered honestly (ENOTSUP when slow).
        const FAST_ZERO = 1 << 5;
        /// CACHE is supported.
        const CACHE = 1 << 6;
        /// All connections to this export see one another's flushed writes.
        const MULTI_CONN = 1 << 7;
        /// The export is a spinning disk.
        const ROTATIONAL = 1 << 8;
    }
}

impl Capabilities {
    /// The transmission flags for these capabilities; `structured` says whether
    /// structured replies were negotiated (DF is only offered then).
    pub fn transmission_flags(self, structured: bool) -> u16 {
        let mut f = NBD_FLAG_HAS_FLAGS;
        let map = [
            (Capabilities::READ_ONLY, NBD_FLAG_READ_ONLY),
            (Capabilities::FLUSH, NBD_FLAG_SEND_FLUSH),
            (Capabilities::FUA, NBD_FLAG_SEND_FUA),
            (Capabilities::ROTATIONAL, NBD_FLAG_ROTATIONAL),
            (Capabilities::TRIM, NBD_FLAG_SEND_TRIM),
            (Capabilities::WRITE_ZEROES, NBD_FLAG_SEND_WRITE_ZEROES),
            (Capabilities::MULTI_CONN, NBD_FLAG_CAN_MULTI_CONN),
            (Capabilities::CACHE, NBD_FLAG_SEND_CACHE),
        ];
        for (cap, flag) in map {
            if self.contains(cap) {
                f |= flag;
            }
        }
        // FAST_ZERO only with WRITE_ZEROES (§1.4).
        if self.contains(Capabilities::FAST_ZERO | Capabilities::WRITE_ZEROES) {
            f |= NBD_FLAG_SEND_FAST_ZERO;
        }
        if structured {
            f |= NBD_FLAG_SEND_DF;
        }
        f
    }
}

/// Block size constraints advertised with NBD_INFO_BLOCK_SIZE (§1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// Minimum (power of two, <= 64 KiB).
    pub min: u32,
    /// Preferred (power of two, >= max(min, 512)).
    pub preferred: u32,
    /// Largest payload accepted.
    pub max: u32,
}

impl Default for BlockSizes {
    /// 1 / 4096 / 32 MiB: the protocol's defaults, so clients that do not ask are safe.
    fn default() -> Self {
        Self {
            min: 1,
            preferred: 4096,
            max: 32 << 20,
        }
    }
}

/// Flags of a WRITE_ZEROES request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZeroFlags {
    /// Persist before replying.
    pub fua: bool,
    /// Allocate: do not punch a hole.
    pub no_hole: bool,
    /// Fail with ENOTSUP unless zeroing is faster than writing zeroes.
    pub fast: bool,
}

/// One extent of the `base:allocation` map, relative to the queried range's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes.
    pub length: u64,
    /// `NBD_STATE_HOLE` / `NBD_STATE_ZERO` bits; 0 means "data".
    pub flags: u32,
}

impl Extent {
    /// Allocated data.
    pub fn data(length: u64) -> Self {
        Self { length, flags: 0 }
    }

    /// Unallocated and reading as zeroes.
    pub fn hole(length: u64) -> Self {
        Self {
            length,
            flags: NBD_STATE_HOLE | NBD_STATE_ZERO,
        }
    }

    /// True when the range reads as zeroes.
    pub fn is_zero(&self) -> bool {
        self.flags & NBD_STATE_ZERO != 0
    }
}

/// Where a run of an export's bytes is stored (see [`Export::locate`]); also the parts
/// of a READ reply planned for zero-copy sending (headers as [`Located::Bytes`]).
#[derive(Debug, Clone)]
pub enum Located {
    /// `len` bytes of `file` from `offset`, stored as they read.
    File {
        /// The file holding them.
        file: Arc<File>,
        /// Where in the file.
        offset: u64,
        /// How many.
        len: u64,
    },
    /// This many bytes that read as zeroes.
    Zeros(u64),
    /// Bytes in memory.
    Bytes(Vec<u8>),
}

impl Located {
    /// How many bytes this run stands for.
    pub fn len(&self) -> u64 {
        match self {
            Located::File { len, .. } | Located::Zeros(len) => *len,
            Located::Bytes(b) => b.len() as u64,
        }
    }

    /// True for an empty run.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A block device served over NBD. Offsets and lengths reaching these methods are
/// already checked against [`Export::size`] by the session.
pub trait Export: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// What it supports.
    fn capabilities(&self) -> Capabilities;
    /// Block size constraints.
    fn block_sizes(&self) -> BlockSizes {
        BlockSizes::default()
    }
    /// A human-readable description for NBD_INFO_DESCRIPTION.
    fn description(&self) -> Option<String> {
        None
    }
    /// Fills `buf` from `offset`.
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno>;
    /// Writes `data` at `offset`; durable before returning when `fua`.
    fn write(&self, _data: &[u8], _offset: u64, _fua: bool) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }
    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }
    /// Hint that a range is no longer needed.
    fn trim(&self, _offset: u64, _len: u64, _fua: bool) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }
    /// Makes a range read as zeroes.
    fn write_zeroes(&self, _offset: u64, _len: u64, _flags: ZeroFlags) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }
    /// Prefetch hint.
    fn cache(&self, _offset: u64, _len: u64) -> Result<(), Errno> {
        Ok(())
    }
    /// The allocation map of `[offset, offset + len)`, in order from `offset`. May stop
    /// early or overshoot; the session trims and merges. The default says "all data".
    fn block_status(&self, _offset: u64, len: u64) -> Result<Vec<Extent>, Errno> {
        Ok(vec![Extent::data(len)])
    }
    /// Where the bytes of `[offset, offset + len)` are stored, as runs in order that
    /// cover exactly `len` bytes: the READ is then served from these runs, and
    /// [`Export::read`] is not called for it (an export that counts reads may count
    /// one here: the session locates a READ at most once, and calls `read` for it only
    /// when this answers `None`). The driver sends file runs with
    /// `sendfile(2)` straight from the page cache, or reads them on a blocking thread
    /// when they are not cached. `None` (the default): not known, call `read`.
    fn locate(&self, _offset: u64, _len: u64) -> Option<Vec<Located>> {
        None
    }

    /// A signal that, once fired, makes servers close this export's connections (its
    /// requests in flight finish first). `None`: connections end only by the client's
    /// or the server's own doing.
    fn end_signal(&self) -> Option<crate::EndSignal> {
        None
    }
}

/// One line of an NBD_OPT_LIST answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportListing {
    /// Export name.
    pub name: String,
    /// Optional description.
    pub description: Option<String>,
}

/// Why an export was not given to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such export (NBD_REP_ERR_UNKNOWN).
    Unknown,
    /// Not for this peer (NBD_REP_ERR_POLICY).
    Policy(String),
    /// Server-side failure (NBD_REP_ERR_PLATFORM), e.g. an unreadable image.
    Platform(String),
}

impl Refusal {
    /// The option reply error type.
    pub fn reply_type(&self) -> u32 {
        match self {
            Refusal::Unknown => NBD_REP_ERR_UNKNOWN,
            Refusal::Policy(_) => NBD_REP_ERR_POLICY,
            Refusal::Platform(_) => NBD_REP_ERR_PLATFORM,
        }
    }

    /// The message sent with it.
    pub fn message(&self) -> &str {
        match self {
            Refusal::Unknown => "no such export",
            Refusal::Policy(m) | Refusal::Platform(m) => m,
        }
    }
}

/// Chooses an export for a client from the export name and the peer's address.
pub trait ExportProvider: Send + Sync {
    /// Opens the export `name` ("" = the default) for `peer`.
    fn open(&self, name: &str, peer: SocketAddr) -> Result<Arc<dyn Export>, Refusal>;
    /// The exports listed to `peer` by NBD_OPT_LIST.
    fn list(&self, peer: SocketAddr) -> Vec<ExportListing>;
}

/// A function that opens an export for a peer.
type OpenFn = dyn Fn(SocketAddr) -> Result<Arc<dyn Export>, Refusal> + Send + Sync;

/// A provider serving one export under one name, to everyone.
pub struct SingleExport {
    name: String,
    description: Option<String>,
    open: Box<OpenFn>,
}

impl SingleExport {
    /// Serves `export` (shared by every connection) under `name`; "" also finds it.
    pub fn new(name: impl Into<String>, export: Arc<dyn Export>) -> Self {
        let description = export.description();
        Self {
            name: name.into(),
            description,
            open: Box::new(move |_| Ok(export.clone())),
        }
    }

    /// Serves a fresh export per connection, made by `open` (e.g. a private overlay).
    pub fn per_connection(
        name: impl Into<String>,
        open: impl Fn(SocketAddr) -> Result<Arc<dyn Export>, Refusal> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            description: None,
            open: Box::new(open),
        }
    }
}

impl ExportProvider for SingleExport {
    fn open(&self, name: &str, peer: SocketAddr) -> Result<Arc<dyn Export>, Refusal> {
        if name.is_empty() || name == self.name {
            (self.open)(peer)
        } else {
            Err(Refusal::Unknown)
        }
    }

    fn list(&self, _peer: SocketAddr) -> Vec<ExportListing> {
        vec![ExportListing {
            name: self.name.clone(),
            description: self.description.clone(),
        }]
    }
}

/// An export held in memory; handy for tests and examples. Every capability is on.
pub struct MemoryExport {
    data: std::sync::RwLock<Vec<u8>>,
}

impl MemoryExport {
    /// An export holding `data`.
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data: std::sync::RwLock::new(data),
        }
    }

    fn range(&self, offset: u64, len: u64) -> Result<std::ops::Range<usize>, Errno> {
        let end = offset.checked_add(len).ok_or(Errno::EINVAL)?;
        if end > self.size() {
            return Err(Errno::EINVAL);
        }
        Ok(offset as usize..end as usize)
    }
}

impl Export for MemoryExport {
    fn size(&self) -> u64 {
        self.data.read().map(|d| d.len() as u64).unwrap_or(0)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::FLUSH
            | Capabilities::FUA
            | Capabilities::TRIM
            | Capabilities::WRITE_ZEROES
            | Capabilities::FAST_ZERO
            | Capabilities::CACHE
            | Capabilities::MULTI_CONN
    }
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        let r = self.range(offset, buf.len() as u64)?;
        let d = self.data.read().map_err(|_| Errno::EIO)?;
        buf.copy_from_slice(&d[r]);
        Ok(())
    }
    fn write(&self, data: &[u8], offset: u64, _fua: bool) -> Result<(), Errno> {
        let r = self.range(offset, data.len() as u64)?;
        self.data.write().map_err(|_| Errno::EIO)?[r].copy_from_slice(data);
        Ok(())
    }
    fn trim(&self, _offset: u64, _len: u64, _fua: bool) -> Result<(), Errno> {
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64, _flags: ZeroFlags) -> Result<(), Errno> {
        let r = self.range(offset, len)?;
        self.data.write().map_err(|_| Errno::EIO)?[r].fill(0);
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, Errno> {
        // Report 4 KiB blocks that are all zero as holes.
        let r = self.range(offset, len)?;
        let d = self.data.read().map_err(|_| Errno::EIO)?;
        let mut out: Vec<Extent> = Vec::new();
        let mut pos = r.start;
        while pos < r.end {
            let end = ((pos / 4096 + 1) * 4096).min(r.end);
            let zero = d[pos..end].iter().all(|&b| b == 0);
            let e = if zero {
                Extent::hole((end - pos) as u64)
            } else {
                Extent::data((end - pos) as u64)
            };
            match out.last_mut() {
                Some(last) if last.flags == e.flags => last.length += e.length,
                _ => out.push(e),
            }
            pos = end;
        }
        Ok(out)
    }
}
