//! Shared set-up of the interop tests: an in-process server on a free loopback port.
#![allow(dead_code)]

pub mod located;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use nbd_proto::driver::server::{Server, ServerConfig, ShutdownHandle};
use nbd_proto::{Export, ExportProvider, MemoryExport, SingleExport};

/// A server running on its own runtime thread; shut down and joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(provider: Arc<dyn ExportProvider>, config: ServerConfig) -> Self {
        Self::start_on(provider, config, 2)
    }

    /// Like `start`, on a runtime of `workers` async worker threads.
    pub fn start_on(
        provider: Arc<dyn ExportProvider>,
        config: ServerConfig,
        workers: usize,
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(provider, config);
        let handle = server.shutdown_handle();
        let thread = std::thread::spawn(move || {
            rt.block_on(server.serve(listener)).unwrap();
        });
        Self {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    /// Serves `export` as `name`.
    pub fn export(name: &str, export: Arc<dyn Export>) -> Self {
        Self::start(
            Arc::new(SingleExport::new(name, export)),
            ServerConfig::default(),
        )
    }

    /// A memory export of `size` bytes with a recognisable pattern in the first half
    /// and zeroes in the second.
    pub fn memory(name: &str, size: usize) -> (Self, Vec<u8>) {
        let data = pattern(size);
        (
            Self::export(name, Arc::new(MemoryExport::new(data.clone()))),
            data,
        )
    }

    pub fn uri(&self, name: &str) -> String {
        format!("nbd://{}/{}", self.addr, name)
    }

    /// Starts the shutdown without waiting for it.
    pub fn trigger_shutdown(&self) {
        self.handle.shutdown();
    }

    pub fn shutdown(mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bytes that differ at every offset in the first half, zeroes in the second.
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| {
            if i < size / 2 {
                (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] | 1
            } else {
                0
            }
        })
        .collect()
}

/// Python helpers prepended to every nbdsh script: `expect("EINVAL", f)` checks that
/// `f()` fails with that error (libnbd names errno values).
const PRELUDE: &str = r#"
def expect(name, f):
    try:
        f()
    except nbd.Error as e:
        assert e.errno == name, "expected %s, got %s (%s)" % (name, e.errno, e)
        return
    raise AssertionError("expected %s, but the call succeeded" % name)
"#;

/// Runs an `nbdsh` script (Debian's python3 first in PATH, per SPECS §1.10) with
/// `URI` defined; the handle `h` is not connected yet. Returns stdout.
pub fn nbdsh(nbdsh: &std::path::Path, uri: &str, script: &str) -> String {
    let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
    let script = format!("URI = {uri:?}\n{PRELUDE}\n{script}\nprint('script ok')\n");
    let out = testkit::run(
        std::process::Command::new(nbdsh)
            .env("PATH", path)
            .args(["-c", &script]),
    );
    assert!(out.contains("script ok"), "{out}");
    out
}
