//! Client drivers over tokio UDP: [`download`] fetches a file with [`ClientRead`],
//! [`upload`] sends one with [`ClientWrite`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::error::{Error, ErrorCode};
use crate::options::Options;
use crate::packet::{MAX_BLKSIZE, Packet};
use crate::provider::Source;
use crate::transfer::{ClientRead, ClientWrite, Outcome, TransferConfig};

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
    let mut t = ClientRead::new(Instant::now(), path, options, config);
    run(server, &mut t).await?;
    Ok(t.take_data())
}

/// Uploads `source` as `path` to the server at `server` in octet mode, asking for
/// `options` (a tsize option is filled in with the source's size).
///
/// # Errors
///
/// As for [`download`].
pub async fn upload(
    server: SocketAddr,
    path: &str,
    source: Arc<dyn Source>,
    options: Options,
    config: &TransferConfig,
) -> Result<(), Error> {
    let mut t = ClientWrite::new(Instant::now(), path, source, options, config);
    run(server, &mut t).await
}

/// What the client loop needs from a client transfer.
trait ClientSession {
    fn awaiting_first_answer(&self) -> bool;
    fn handle_datagram(&mut self, now: Instant, bytes: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn take_outcome(&mut self) -> Option<Outcome>;
}

macro_rules! client_session {
    ($t:ty) => {
        impl ClientSession for $t {
            fn awaiting_first_answer(&self) -> bool {
                <$t>::awaiting_first_answer(self)
            }
            fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
                <$t>::handle_datagram(self, now, bytes)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
                <$t>::poll_transmit(self, buf)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn take_outcome(&mut self) -> Option<Outcome> {
                <$t>::take_outcome(self)
            }
        }
    };
}
client_session!(ClientRead);
client_session!(ClientWrite);

async fn run(server: SocketAddr, t: &mut impl ClientSession) -> Result<(), Error> {
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| Error::io("binding a client socket", e))?;
    let mut peer = server;
    let mut out = vec![0u8; MAX_BLKSIZE + 64];
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
                Outcome::Completed | Outcome::Declined => Ok(()),
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
