//! The connection's writer task: replies in the order they finish, those that are
//! ready batched into one send, READ parts planned for zero copy sent with
//! `sendfile(2)` behind their header; a client that leaves its replies unread is
//! dropped after the stall timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::driver::pool::BufferPool;
use crate::driver::zero_copy;
use crate::error::Result;
use crate::export::Located;

/// A reply on its way to the writer task, with the room it holds until it is sent: its
/// share of the connection's in-flight bytes and requests, and of the server's memory
/// when its data sits in a buffer.
pub(super) struct Reply {
    pub(super) body: Body,
    pub(super) permits: [OwnedSemaphorePermit; 2],
    pub(super) memory: Option<OwnedSemaphorePermit>,
}

pub(super) enum Body {
    /// The whole reply.
    Bytes(Vec<u8>),
    /// A READ reply planned for zero-copy sending.
    Parts(Vec<Located>),
}

/// The connection's sending side: small replies gathered into one buffer and sent
/// together, file runs sent with `sendfile(2)` behind their header.
struct Sender {
    wr: OwnedWriteHalf,
    buf: Vec<u8>,
    /// How long the client may leave replies unread before the connection ends.
    stall: Duration,
}

/// Bytes gathered before they are sent.
const SEND_BUFFER: usize = 64 << 10;

static ZEROS: [u8; SEND_BUFFER] = [0; SEND_BUFFER];

impl Sender {
    async fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        if self.buf.len() + bytes.len() > SEND_BUFFER {
            self.flush(false).await?;
        }
        if bytes.len() >= SEND_BUFFER {
            zero_copy::send_all(self.wr.as_ref(), bytes, false, self.stall).await?;
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    async fn part(&mut self, part: Located) -> Result<()> {
        match part {
            Located::Bytes(b) => self.bytes(&b).await,
            Located::Zeros(mut n) => {
                while n > 0 {
                    let k = n.min(SEND_BUFFER as u64);
                    self.bytes(&ZEROS[..k as usize]).await?;
                    n -= k;
                }
                Ok(())
            }
            Located::File { file, offset, len } => {
                self.flush(true).await?;
                Ok(zero_copy::send_file(self.wr.as_ref(), &file, offset, len, self.stall).await?)
            }
        }
    }

    /// Sends what is gathered; `more` when more bytes follow at once.
    async fn flush(&mut self, more: bool) -> Result<()> {
        if !self.buf.is_empty() {
            zero_copy::send_all(self.wr.as_ref(), &self.buf, more, self.stall).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

pub(super) async fn write_replies(
    wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Reply>,
    pool: Arc<BufferPool>,
    stall: Duration,
) -> Result<()> {
    let mut out = Sender {
        wr,
        buf: Vec::new(),
        stall,
    };
    while let Some(first) = rx.recv().await {
        // Batch replies that are ready; send when the queue is empty.
        out.buf = pool.take(SEND_BUFFER);
        out.buf.clear();
        let mut next = Some(first);
        while let Some(reply) = next {
            match reply.body {
                Body::Bytes(bytes) => {
                    out.bytes(&bytes).await?;
                    pool.give(bytes);
                }
                Body::Parts(parts) => {
                    for part in parts {
                        out.part(part).await?;
                    }
                }
            }
            drop((reply.permits, reply.memory));
            next = rx.try_recv().ok();
        }
        out.flush(false).await?;
        // An idle connection keeps no buffer.
        pool.give(std::mem::take(&mut out.buf));
    }
    out.wr.shutdown().await.ok();
    Ok(())
}
