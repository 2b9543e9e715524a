//! [`download`]: fetch one file from a TFTP server with [`ClientRead`] over tokio UDP.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::error::{Error, ErrorCode};
use crate::options::Options;
use crate::packet::{MAX_BLKSIZE, Packet};
use crate::transfer::{ClientRead, Outcome, TransferConfig};

/// Downloads `path` from the server at `server` in octet mode, asking for `options`.
///
/// The first answer fixes the server's TID; packets from any other source get ERROR 5.
///
/// # Errors
///
/// The server's ERROR ([`Error::Peer`]), [`Error::TimedOut`], or a socket error.
pub async fn download(
    server: SocketAddr,
    path: &str,
    options: Options,
    config: &TransferConfig,
) -> Result<Vec<u8>, Error> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| Error::io("binding", io::Error::other("address")))?;
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| Error::io("binding a client socket", e))?;
    let mut t = ClientRead::new(Instant::now(), path, options, config);
    let mut peer = server;
    let mut out = vec![0u8; 1024];
    let mut inbuf = vec![0u8; MAX_BLKSIZE + 64];
    loop {
        while let Some(n) = t.poll_transmit(&mut out) {
            socket
                .send_to(&out[..n], peer)
                .await
                .map_err(|e| Error::io("sending", e))?;
        }
        if let Some(outcome) = t.take_outcome() {
            return match outcome {
                Outcome::Completed | Outcome::Declined => Ok(t.take_data()),
                Outcome::Failed(e) => Err(e),
            };
        }
        let deadline = t.poll_timeout();
        tokio::select! {
            r = socket.recv_from(&mut inbuf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(Error::io("receiving", e)),
                };
                if t.awaiting_first_answer() && from.ip() == server.ip() {
                    peer = from;
                }
                if from == peer {
                    t.handle_datagram(Instant::now(), &inbuf[..n]);
                } else {
                    let p = Packet::Error { code: ErrorCode::UnknownTid, message: "Unknown transfer ID".into() };
                    let _ = socket.send_to(&p.to_vec(), from).await;
                }
            }
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            } => t.handle_timeout(Instant::now()),
        }
    }
}
