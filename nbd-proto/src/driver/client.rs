//! A small tokio NBD client over the sans-IO client sessions: many requests may be in
//! flight at once (clone the [`Client`] and call it from several tasks); a reader task
//! matches replies to their callers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

use crate::client::handshake::{ClientConfig, ClientHandshake, ClientNegotiated};
use crate::client::transmission::{ClientTransmission, Reply};
use crate::error::{Error, Result};
use crate::export::Errno;
use crate::wire::reply::BlockDescriptor;
use crate::wire::request::Command;

type Waiter = oneshot::Sender<Result<Reply, Errno>>;

struct State {
    session: ClientTransmission,
    waiters: HashMap<u64, Waiter>,
    closed: bool,
}

struct Inner {
    negotiated: ClientNegotiated,
    state: Mutex<State>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
}

/// A connected client in transmission; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects to `addr` and negotiates `config`.
    pub async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut rd, mut wr) = stream.into_split();
        let mut hs = ClientHandshake::new(config);
        let mut buf = BytesMut::with_capacity(4096);
        let negotiated = 'outer: loop {
            if rd.read_buf(&mut buf).await? == 0 {
                return Err(Error::Closed);
            }
            loop {
                let (used, done) = hs.handle_input(&buf)?;
                buf.advance(used);
                let out = hs.take_output();
                if !out.is_empty() {
                    wr.write_all(&out).await?;
                }
                if let Some(n) = done {
                    break 'outer n;
                }
                if used == 0 {
                    break;
                }
            }
        };
        let state = State {
            session: ClientTransmission::new(negotiated.structured),
            waiters: HashMap::new(),
            closed: false,
        };
        let inner = Arc::new(Inner {
            negotiated,
            state: Mutex::new(state),
            writer: tokio::sync::Mutex::new(wr),
        });
        tokio::spawn(read_replies(rd, buf, inner.clone()));
        Ok(Client { inner })
    }

    /// What the handshake agreed on.
    pub fn negotiated(&self) -> &ClientNegotiated {
        &self.inner.negotiated
    }

    async fn call(
        &self,
        command: Command,
        flags: u16,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) -> Result<Reply> {
        let mut out = Vec::with_capacity(28 + payload.len());
        let rx = {
            let mut st = self.inner.state.lock().map_err(|_| Error::Closed)?;
            if st.closed {
                return Err(Error::Closed);
            }
            let cookie = st
                .session
                .request(command, flags, offset, length, payload, &mut out);
            let (tx, rx) = oneshot::channel();
            st.waiters.insert(cookie, tx);
            rx
        };
        self.inner.writer.lock().await.write_all(&out).await?;
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(errno)) => Err(Error::Server(errno)),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: u32) -> Result<Vec<u8>> {
        Ok(self.call(Command::Read, 0, offset, len, &[]).await?.data)
    }

    /// Writes `data` at `offset` with command `flags` (e.g. FUA).
    pub async fn write(&self, offset: u64, data: &[u8], flags: u16) -> Result<()> {
        let len = u32::try_from(data.len()).map_err(|_| Error::TooLong {
            structure: "WRITE payload",
            len: data.len() as u64,
            max: u32::MAX.into(),
        })?;
        self.call(Command::Write, flags, offset, len, data)
            .await
            .map(drop)
    }

    /// FLUSH.
    pub async fn flush(&self) -> Result<()> {
        self.call(Command::Flush, 0, 0, 0, &[]).await.map(drop)
    }

    /// TRIM.
    pub async fn trim(&self, offset: u64, len: u32) -> Result<()> {
        self.call(Command::Trim, 0, offset, len, &[])
            .await
            .map(drop)
    }

    /// WRITE_ZEROES with command `flags` (NO_HOLE, FAST_ZERO, FUA).
    pub async fn write_zeroes(&self, offset: u64, len: u32, flags: u16) -> Result<()> {
        self.call(Command::WriteZeroes, flags, offset, len, &[])
            .await
            .map(drop)
    }

    /// BLOCK_STATUS of `base:allocation` (negotiate it in [`ClientConfig`]).
    pub async fn block_status(
        &self,
        offset: u64,
        len: u32,
        flags: u16,
    ) -> Result<Vec<BlockDescriptor>> {
        Ok(self
            .call(Command::BlockStatus, flags, offset, len, &[])
            .await?
            .extents)
    }

    /// Sends DISC and closes the sending side.
    pub async fn disconnect(&self) -> Result<()> {
        let mut out = Vec::new();
        {
            let mut st = self.inner.state.lock().map_err(|_| Error::Closed)?;
            st.session.request(Command::Disc, 0, 0, 0, &[], &mut out);
        }
        let mut w = self.inner.writer.lock().await;
        w.write_all(&out).await?;
        w.shutdown().await?;
        Ok(())
    }
}

/// Wakes the caller waiting for a finished request.
fn deliver(st: &mut State, done: Option<crate::client::transmission::Completion>) {
    if let Some(c) = done
        && let Some(w) = st.waiters.remove(&c.cookie)
    {
        let _ = w.send(c.result);
    }
}

/// The input buffer grows by at least this much per read.
const READ_CHUNK: usize = 64 << 10;
/// Enough for any reply header, with an OFFSET_DATA chunk's offset field.
const HEADER_PEEK: usize = 32;

async fn read_replies(mut rd: OwnedReadHalf, mut buf: BytesMut, inner: Arc<Inner>) {
    // After a large payload went straight into its own buffer, the next reply is
    // likely large too: read no more than its header, so none of its payload lands
    // in `buf` to be copied out again.
    let mut header_only = false;
    let result: Result<()> = async {
        loop {
            // Hand out every reply already buffered; stop at a READ payload still to
            // come, which is read straight into its own buffer (never copied).
            let direct = loop {
                let mut st = inner.state.lock().map_err(|_| Error::Closed)?;
                if let Some((head, n)) = st.session.direct_payload(&buf)
                    && buf.len() < head + n
                {
                    break Some((head, n));
                }
                let (used, done) = st.session.handle_input(&buf)?;
                buf.advance(used);
                deliver(&mut st, done);
                if used == 0 {
                    break None;
                }
                header_only = false;
            };
            if let Some((head, n)) = direct {
                let header = buf.split_to(head);
                let mut data = Vec::with_capacity(n);
                data.extend_from_slice(&buf);
                buf.clear();
                while data.len() < n {
                    let room = n - data.len();
                    if rd.read_buf(&mut (&mut data).limit(room)).await? == 0 {
                        return Err(Error::Closed);
                    }
                }
                let mut st = inner.state.lock().map_err(|_| Error::Closed)?;
                let done = st.session.complete_direct(&header, data)?;
                deliver(&mut st, done);
                header_only = n >= READ_CHUNK;
                continue;
            }
            let read = if header_only && buf.len() < HEADER_PEEK {
                let room = HEADER_PEEK - buf.len();
                rd.read_buf(&mut (&mut buf).limit(room)).await?
            } else {
                // Room for the whole reply under way, and a good chunk per read.
                let wanted = inner
                    .state
                    .lock()
                    .map_err(|_| Error::Closed)?
                    .session
                    .wanted(&buf);
                buf.reserve(wanted.saturating_sub(buf.len()).max(READ_CHUNK));
                rd.read_buf(&mut buf).await?
            };
            if read == 0 {
                return Err(Error::Closed);
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended");
    }
    if let Ok(mut st) = inner.state.lock() {
        st.closed = true;
        st.waiters.clear();
    }
}
