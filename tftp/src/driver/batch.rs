//! Sending a window of datagrams in one system call.
//!
//! A windowed transfer has up to a window of DATA packets due at once; `sendmmsg(2)`
//! hands them all to the kernel in one call instead of one `sendto(2)` each, which is
//! most of the server's CPU per packet when many clients download at once.

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams gathered for one call.
pub(crate) const MAX_BATCH: usize = 64;

/// Datagrams laid end to end in one buffer: `ends[i]` is where datagram `i` ends.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    ends: Vec<usize>,
}

impl Batch {
    /// Lets `emit` write datagrams one after another into `buf` while at least `room`
    /// bytes are left (and at most [`MAX_BATCH`]); returns how many it wrote.
    pub(crate) fn gather(
        &mut self,
        buf: &mut [u8],
        room: usize,
        mut emit: impl FnMut(&mut [u8]) -> Option<usize>,
    ) -> usize {
        self.ends.clear();
        let mut used = 0;
        while buf.len() - used >= room && self.ends.len() < MAX_BATCH {
            let Some(n) = emit(&mut buf[used..]) else {
                break;
            };
            used += n;
            self.ends.push(used);
        }
        self.ends.len()
    }

    /// The gathered datagrams, in order.
    pub(crate) fn datagrams<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, &end)| &buf[start..end])
    }

    /// Sends the gathered datagrams to `peer`. A datagram refused with an error that
    /// `skip` accepts (a transient one) is dropped, as a lost packet would be; any
    /// other error is returned.
    pub(crate) async fn send(
        &self,
        socket: &UdpSocket,
        peer: SocketAddr,
        buf: &[u8],
        skip: impl Fn(&io::Error) -> bool,
    ) -> io::Result<()> {
        if let [end] = self.ends[..] {
            // A lone datagram (lock-step): no message headers to build.
            return match socket.send_to(&buf[..end], peer).await {
                Err(e) if !skip(&e) => Err(e),
                _ => Ok(()),
            };
        }
        let datagrams: Vec<[IoSlice<'_>; 1]> =
            self.datagrams(buf).map(|d| [IoSlice::new(d)]).collect();
        let addr = SocketAddrAny::from(peer);
        let mut sent = 0;
        while sent < datagrams.len() {
            match send_some(socket, &addr, &datagrams[sent..]) {
                Ok(n) => sent += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
                Err(e) if skip(&e) => sent += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// One `sendmmsg(2)` of `datagrams` (as many as the kernel takes) if the socket is
/// writable; the message headers point into `datagrams`, so they live only here.
fn send_some(
    socket: &UdpSocket,
    addr: &SocketAddrAny,
    datagrams: &[[IoSlice<'_>; 1]],
) -> io::Result<usize> {
    let mut controls: Vec<_> = datagrams
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<_> = datagrams
        .iter()
        .zip(&mut controls)
        .map(|(iov, control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    socket.try_io(Interest::WRITABLE, || {
        sendmmsg(socket, &mut msgs, SendFlags::empty()).map_err(io::Error::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_stops_when_room_runs_out_and_keeps_the_order() {
        let mut buf = [0u8; 100];
        let mut batch = Batch::default();
        let mut next = 0u8;
        let n = batch.gather(&mut buf, 30, |out| {
            next += 1;
            out[..next as usize].fill(next);
            Some(next as usize)
        });
        // 1 + 2 + ... + 7 = 28 bytes leave 72; after 8 (36) 64; ... after 9 (45) 55;
        // after 10 (55) 45; after 11 (66) 34; after 12 (78) 22 < 30: stop.
        assert_eq!(n, 12);
        let got: Vec<_> = batch.datagrams(&buf).collect();
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d.len(), i + 1);
            assert!(d.iter().all(|&b| usize::from(b) == i + 1));
        }
        assert_eq!(batch.gather(&mut buf, 30, |_| None), 0);
        assert_eq!(batch.datagrams(&buf).count(), 0);
    }

    #[test]
    fn a_batch_arrives_whole_and_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut buf = vec![0u8; 16 << 10];
            let mut batch = Batch::default();
            let mut i = 0u8;
            let n = batch.gather(&mut buf, 1500, |out| {
                i += 1;
                (i <= 10).then(|| {
                    out[..1000].fill(i);
                    1000
                })
            });
            assert_eq!(n, 10);
            let peer = client.local_addr().unwrap();
            batch.send(&server, peer, &buf, |_| false).await.unwrap();
            let mut got = [0u8; 2000];
            for i in 1..=10u8 {
                let (len, from) = client.recv_from(&mut got).await.unwrap();
                assert_eq!(from, server.local_addr().unwrap());
                assert_eq!(len, 1000);
                assert!(got[..len].iter().all(|&b| b == i), "datagram {i}");
            }
        });
    }
}
