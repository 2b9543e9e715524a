//! Shared test support: a server on an ephemeral loopback port in a background runtime,
//! and files with deterministic contents.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use tftp::{DirProvider, Server, ServerConfig};

/// A running server; stops when dropped.
pub struct Running {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Serves `root` on 127.0.0.1 (or `bind`) with `config`.
pub fn serve_dir(root: &Path, config: ServerConfig) -> Running {
    let provider = DirProvider::new(root)
        .unwrap()
        .allow_write(config.allow_write);
    serve(provider, config, "127.0.0.1:0".parse().unwrap())
}

/// Serves any provider at `bind`.
pub fn serve<P: tftp::Provider + 'static>(
    provider: P,
    config: ServerConfig,
    bind: SocketAddr,
) -> Running {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime
        .block_on(Server::bind(bind, provider, config))
        .unwrap();
    let addr = server.local_addr().unwrap();
    runtime.spawn(async move {
        if let Err(e) = server.run().await {
            eprintln!("server stopped: {e}");
        }
    });
    Running {
        addr,
        runtime: Some(runtime),
    }
}

/// Deterministic, non-repeating bytes (a simple xorshift stream).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes the interop file set into `root` and returns (name, contents).
pub fn file_set(root: &Path) -> Vec<(String, Vec<u8>)> {
    let sizes: [(&str, usize); 7] = [
        ("empty", 0),
        ("one", 1),
        ("b511", 511),
        ("b512", 512),
        ("b513", 513),
        ("m1468", 1468 * 7),
        ("ten_mib", 10 << 20),
    ];
    sizes
        .iter()
        .enumerate()
        .map(|(i, (name, len))| {
            let data = pattern(*len, i as u64 + 1);
            std::fs::write(root.join(name), &data).unwrap();
            (name.to_string(), data)
        })
        .collect()
}

/// A file of more than 65535 blocks at blksize 512 (block numbers roll over).
pub fn rollover_file(root: &Path) -> (String, Vec<u8>) {
    let data = pattern(65536 * 512 + 1000, 99);
    std::fs::write(root.join("rollover"), &data).unwrap();
    ("rollover".into(), data)
}

/// Asserts that `got` is byte-identical to `want`, without dumping megabytes.
pub fn assert_same(got: &Path, want: &[u8], what: &str) {
    let bytes = std::fs::read(got).unwrap_or_else(|e| panic!("{what}: no output file: {e}"));
    assert!(
        bytes.len() == want.len(),
        "{what}: got {} bytes, want {}",
        bytes.len(),
        want.len()
    );
    assert!(bytes == want, "{what}: contents differ");
}
