//! nbdsh scripts: every command and flag the server advertises, and the error reply
//! each bad request gets (SPECS §1.7), with the connection going on afterwards.

mod common;

use std::sync::Arc;

use common::TestServer;
use nbd_proto::{Capabilities, Errno, Export, MemoryExport};

#[test]
fn flush_fua_trim_zeroes_cache_and_block_status() {
    let nbdsh = testkit::require_peer!("nbdsh");
    let (server, _) = TestServer::memory("disk", 1 << 20);
    common::nbdsh(
        &nbdsh,
        &server.uri("disk"),
        r#"
h.add_meta_context("base:allocation")
h.connect_uri(URI)
assert h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero() and h.can_cache()
assert h.can_fast_zero() and h.can_multi_conn() and not h.is_read_only()
h.pwrite(b"\xab" * 4096, 8192, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 8192) == b"\xab" * 4096
h.flush()
h.trim(4096, 8192, nbd.CMD_FLAG_FUA)
h.zero(4096, 8192, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(4096, 8192) == bytes(4096)
h.zero(100, 9000, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(100, 9000) == bytes(100)
h.cache(65536, 0)

seen = []
def cb(meta, offset, entries, err):
    assert meta == "base:allocation"
    seen.append((offset, list(entries)))
h.block_status(1 << 20, 0, cb)
ext = seen[-1][1]
assert sum(ext[0::2]) == 1 << 20 and all(n > 0 for n in ext[0::2]), ext
assert ext[-1] == 3, ext  # the zero second half is a hole
h.block_status(1 << 20, 0, cb, nbd.CMD_FLAG_REQ_ONE)
assert len(seen[-1][1]) == 2, seen[-1]
assert seen[-1][1][0] <= 1 << 20
"#,
    );
}

#[test]
fn bad_requests_get_the_spec_errors_and_the_connection_goes_on() {
    let nbdsh = testkit::require_peer!("nbdsh");
    let (server, _) = TestServer::memory("disk", 1 << 20);
    common::nbdsh(
        &nbdsh,
        &server.uri("disk"),
        r#"
h.add_meta_context("base:allocation")
h.connect_uri(URI)
h.set_strict_mode(0)
size = h.get_size()
expect("EINVAL", lambda: h.pread(512, size))             # past the end
expect("EINVAL", lambda: h.pread(1024, size - 512))      # straddling the end
expect("EINVAL", lambda: h.pread(0, 0))                  # zero length
expect("ENOSPC", lambda: h.pwrite(b"x" * 512, size))     # write past the end
expect("ENOSPC", lambda: h.zero(512, size))              # write_zeroes past the end
expect("EINVAL", lambda: h.trim(512, size))              # trim past the end
expect("EINVAL", lambda: h.cache(512, size))             # cache past the end
expect("EINVAL", lambda: h.block_status(512, size, lambda *a: 0))
expect("EINVAL", lambda: h.pread(512, 0, nbd.CMD_FLAG_NO_HOLE))    # flag not valid for READ
expect("EINVAL", lambda: h.pwrite(b"x", 0, nbd.CMD_FLAG_REQ_ONE))  # flag not valid for WRITE
expect("EINVAL", lambda: h.flush(nbd.CMD_FLAG_NO_HOLE))
assert h.pread(512, 0) == h.pread(512, 0)                # the connection still works
"#,
    );
}

#[test]
fn block_status_without_a_context_is_einval() {
    let nbdsh = testkit::require_peer!("nbdsh");
    let (server, _) = TestServer::memory("disk", 1 << 20);
    common::nbdsh(
        &nbdsh,
        &server.uri("disk"),
        r#"
h.connect_uri(URI)
h.set_strict_mode(0)
expect("EINVAL", lambda: h.block_status(512, 0, lambda *a: 0))
h.pread(512, 0)
"#,
    );
}

/// A memory export that refuses writes.
struct ReadOnly(MemoryExport);

impl Export for ReadOnly {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::READ_ONLY
            | Capabilities::FLUSH
            | Capabilities::TRIM
            | Capabilities::WRITE_ZEROES
    }
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        self.0.read(buf, offset)
    }
}

#[test]
fn read_only_export_refuses_writes_with_eperm() {
    let nbdsh = testkit::require_peer!("nbdsh");
    let server = TestServer::export("ro", Arc::new(ReadOnly(MemoryExport::new(vec![1; 65536]))));
    common::nbdsh(
        &nbdsh,
        &server.uri("ro"),
        r#"
h.connect_uri(URI)
assert h.is_read_only()
h.set_strict_mode(0)
expect("EPERM", lambda: h.pwrite(b"x" * 512, 0))
expect("EPERM", lambda: h.trim(512, 0))
expect("EPERM", lambda: h.zero(512, 0))
assert h.pread(4, 0) == b"\x01" * 4
"#,
    );
}

#[test]
fn simple_replies_when_structured_replies_are_declined() {
    let nbdsh = testkit::require_peer!("nbdsh");
    let (server, data) = TestServer::memory("disk", 1 << 20);
    let out = common::nbdsh(
        &nbdsh,
        &server.uri("disk"),
        r#"
h.set_request_structured_replies(False)
h.connect_uri(URI)
assert not h.get_structured_replies_negotiated()
assert not h.can_df()
print(h.pread(8, 100).hex())
h.set_strict_mode(0)
expect("EINVAL", lambda: h.pread(512, h.get_size()))
"#,
    );
    assert!(out.contains(&hex(&data[100..108])), "{out}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
