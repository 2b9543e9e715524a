//! Sending file bytes without copying them through user space: `sendfile(2)` from the
//! page cache to the socket, reply headers sent with `MSG_MORE` so they leave in the
//! same segment as the data, and `cachestat(2)` to tell whether a range is in the page
//! cache (a `sendfile` of a cold range would stall the async worker on the disk).
//!
//! The only unsafe code of the crate: three system calls on descriptors that the
//! borrowed `File` and `TcpStream` keep open for the duration of each call.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// `cachestat(2)`, the same number on every architecture (added after the tables
/// were unified, Linux 6.5).
const SYS_CACHESTAT: libc::c_long = 451;

const PAGE: u64 = 4096;

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// True when every page of `[offset, offset + len)` of `file` is in the page cache.
/// False when not, or when the kernel cannot say (before 6.5): callers then read the
/// bytes on a blocking thread instead.
pub fn resident(file: &File, offset: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let first = offset / PAGE;
    let end = (offset + len).div_ceil(PAGE);
    let range = CachestatRange {
        off: first * PAGE,
        len: (end - first) * PAGE,
    };
    let mut stat = Cachestat::default();
    // SAFETY: `file` keeps the descriptor open; `range` and `stat` are live, properly
    // laid out (`struct cachestat_range`, `struct cachestat`) and writable for the call.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    };
    r == 0 && stat.nr_cache >= end - first
}

/// Waits until the socket takes bytes; fails with `TimedOut` when it has taken none
/// for `stall` (a client that stopped reading its replies).
async fn writable(stream: &TcpStream, stall: Duration) -> io::Result<()> {
    match tokio::time::timeout(stall, stream.writable()).await {
        Ok(ready) => ready,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client has read no reply bytes for too long",
        )),
    }
}

/// Sends all of `bytes`; with `more`, tells the kernel more data follows at once, so
/// a short header is not pushed out as a segment of its own. Fails when the client
/// reads nothing for `stall`.
pub async fn send_all(
    stream: &TcpStream,
    mut bytes: &[u8],
    more: bool,
    stall: Duration,
) -> io::Result<()> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    while !bytes.is_empty() {
        writable(stream, stall).await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: the stream keeps the socket open; `bytes` is a live slice of
            // `bytes.len()` readable bytes.
            let n = unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    flags,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `len` bytes of `file` from `offset` with `sendfile(2)`; fails when the client
/// reads nothing for `stall`.
pub async fn send_file(
    stream: &TcpStream,
    file: &File,
    offset: u64,
    len: u64,
    stall: Duration,
) -> io::Result<()> {
    let mut off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    let mut left = len;
    while left > 0 {
        writable(stream, stall).await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let count = left.min(1 << 30) as usize;
            // SAFETY: both descriptors are kept open by their owners for the call;
            // `off` is a live, writable off_t that the kernel advances.
            let n =
                unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the image file ends before offset {}", offset + len),
                ));
            }
            Ok(n) => left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_just_written_is_resident_and_ranges_past_its_end_are_not() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; 3 * PAGE as usize]).unwrap();
        assert!(resident(&f, 0, 3 * PAGE));
        assert!(resident(&f, 100, 5000));
        assert!(resident(&f, 0, 0));
        assert!(!resident(&f, 2 * PAGE, 4 * PAGE), "pages past the end");
    }
}
