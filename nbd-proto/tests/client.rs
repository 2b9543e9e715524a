//! The tokio client against our server and against real servers (nbdkit, qemu-nbd).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::TestServer;
use nbd_proto::client::handshake::ClientConfig;
use nbd_proto::driver::client::Client;
use nbd_proto::wire::consts::*;
use nbd_proto::{Errno, Error};

fn config(export: &str, structured: bool) -> ClientConfig {
    ClientConfig {
        export: export.into(),
        structured,
        base_allocation: structured,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Writes, reads back with 16 requests in flight, zeroes, flushes and maps.
async fn exercise(addr: SocketAddr, export: &str, structured: bool) {
    let client = Client::connect(addr, config(export, structured))
        .await
        .unwrap();
    let n = client.negotiated().clone();
    assert_eq!(n.structured, structured);
    assert_eq!(n.base_allocation.is_some(), structured);
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                let data = vec![i as u8 + 1; 5000];
                c.write(i * 7001, &data, 0).await.unwrap();
                assert_eq!(c.read(i * 7001, 5000).await.unwrap(), data);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    mixed_reads(&client).await;
    client.flush().await.unwrap();
    client.write_zeroes(1 << 19, 1 << 19, 0).await.unwrap();
    assert!(
        client
            .read(1 << 19, 4096)
            .await
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
    let past = client.read(n.size, 512).await;
    assert!(
        matches!(past, Err(Error::Server(Errno::EINVAL))),
        "{past:?}"
    );
    if structured {
        let ext = client.block_status(0, 1 << 20, 0).await.unwrap();
        assert!(!ext.is_empty());
        let total: u64 = ext.iter().map(|e| u64::from(e.length)).sum();
        assert!(total <= 1 << 20 || ext.len() == 1);
        let one = client
            .block_status(0, 1 << 20, NBD_CMD_FLAG_REQ_ONE)
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
    }
    client.disconnect().await.unwrap();
}

/// Large and small reads in flight together: whole replies read straight into their
/// buffers alternate with small ones gathered in the input buffer.
async fn mixed_reads(client: &Client) {
    let model: Vec<u8> = (0..512u32 << 10).map(|i| (i % 251) as u8).collect();
    client.write(0, &model, 0).await.unwrap();
    let tasks: Vec<_> = (0..24usize)
        .map(|i| {
            let (c, model) = (client.clone(), model.clone());
            tokio::spawn(async move {
                let len = [128 << 10, 3000, 200_000, 17][i % 4];
                let offset = (i * 13_001) % (model.len() - len);
                let got = c.read(offset as u64, len as u32).await.unwrap();
                assert!(got == model[offset..offset + len], "read {i} differs");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn client_against_our_server() {
    let (server, data) = TestServer::memory("disk", 1 << 20);
    rt().block_on(async {
        exercise(server.addr, "disk", true).await;
        exercise(server.addr, "disk", false).await;
        let client = Client::connect(server.addr, config("disk", true))
            .await
            .unwrap();
        // Reads of the untouched tail come back whole, holes included.
        assert_eq!(
            client.read(900_000, 100_000).await.unwrap(),
            data[900_000..1_000_000]
        );
        let refused = Client::connect(server.addr, config("nope", true)).await;
        assert!(
            matches!(refused, Err(Error::Refused(_))),
            "{:?}",
            refused.err()
        );
    });
}

#[test]
fn client_against_nbdkit_and_qemu_nbd() {
    let nbdkit = testkit::require_peer!("nbdkit");
    let qemu_nbd = testkit::require_peer!("qemu-nbd");
    let port = testkit::free_tcp_port();
    let _kit = testkit::ChildGuard::spawn(Command::new(&nbdkit).args([
        "-f",
        "-p",
        &port.to_string(),
        "--ipaddr",
        "127.0.0.1",
        "-e",
        "disk",
        "memory",
        "1M",
    ]));
    let kit_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    testkit::wait_for_tcp(kit_addr, Duration::from_secs(20));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, vec![0u8; 1 << 20]).unwrap();
    let port = testkit::free_tcp_port();
    let _qemu = testkit::ChildGuard::spawn(
        Command::new(&qemu_nbd)
            .args([
                "-f",
                "raw",
                "-x",
                "disk",
                "-b",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
            ])
            .arg(&file),
    );
    let qemu_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    testkit::wait_for_tcp(qemu_addr, Duration::from_secs(20));
    rt().block_on(async {
        exercise(kit_addr, "disk", true).await;
        exercise(kit_addr, "disk", false).await;
        exercise(qemu_addr, "disk", true).await;
    });
}

/// One request at a time, as a booting device reads: after a few requests the server
/// busy-polls for the next one (requests and WRITE payloads then arrive through its
/// second handle on the socket). Every byte must still land where it belongs.
#[test]
fn a_synchronous_client_is_served_byte_exact() {
    let (server, data) = TestServer::memory("disk", 1 << 20);
    rt().block_on(async {
        let client = Client::connect(server.addr, config("disk", true))
            .await
            .unwrap();
        let mut model = data;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for round in 0..400u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1 + (x % 20_000) as usize;
            let offset = (x >> 20) as usize % (model.len() - len);
            if round % 2 == 0 {
                let bytes: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
                client.write(offset as u64, &bytes, 0).await.unwrap();
                model[offset..offset + len].copy_from_slice(&bytes);
            } else {
                let got = client.read(offset as u64, len as u32).await.unwrap();
                assert!(got == model[offset..offset + len], "read {round} differs");
            }
        }
        let all = client.read(0, model.len() as u32).await.unwrap();
        assert!(all == model, "the disk differs from the model");
    });
}
