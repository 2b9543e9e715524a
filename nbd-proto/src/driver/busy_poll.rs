//! Busy-polling the socket of a synchronous client for its next request.
//!
//! A client that sends one request at a time (a booting kernel reading its root file
//! system, `fio --iodepth=1`) pays a round trip per request, and much of it is the
//! server thread's wake-up when the next request arrives: tens of microseconds in a
//! virtual machine. After the reply has gone out, polling the socket for a few dozen
//! microseconds catches the next request without that wake-up. Clients with several
//! requests in flight do not need it (pipelining hides the wake-up), so a connection
//! spins only after [`SYNC_STREAK`] requests in a row arrived with nothing else in
//! flight.
//!
//! Spinning costs CPU, so it is bounded (the `busy-poll` crate): a time budget per
//! wait; at most one spinning thread per spare core in the whole process, TFTP
//! transfers included ([`Budget::global`]); and a back-off: a wait that ends
//! empty-handed makes the connection skip its next 1, 2, 4 ... 64 chances, so a client
//! that thinks longer than the budget between requests (or has gone idle) costs next to
//! nothing.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Duration;

use busy_poll::{Backoff, Budget};
use bytes::BytesMut;

/// Requests in a row, each alone in flight, that make a client synchronous.
pub(crate) const SYNC_STREAK: u32 = 8;
/// Bytes read per spin (a request header is 28; a WRITE payload's rest follows the
/// usual path).
const SPIN_READ: usize = 4096;

/// When a connection spins: how synchronous its client is, and its back-off.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rhythm {
    /// Requests in a row that arrived with nothing else in flight.
    streak: u32,
    backoff: Backoff,
}

impl Rhythm {
    /// A request arrived; `alone` when no other request of the connection was in
    /// flight (its client waited for the previous reply).
    pub(crate) fn request(&mut self, alone: bool) {
        self.streak = if alone {
            self.streak.saturating_add(1)
        } else {
            0
        };
    }

    /// Whether this wait may spin (a skipped chance counts down the back-off).
    pub(crate) fn may_spin(&mut self) -> bool {
        self.streak >= SYNC_STREAK && self.backoff.try_spin()
    }

    /// Records how a spin ended.
    fn spun(&mut self, caught: bool) {
        self.backoff.spun(caught);
    }
}

/// One connection's busy-poller, with a second handle on its (non-blocking) socket,
/// duplicated at the first spin (so connections that never spin hold no extra
/// descriptor).
pub(crate) struct BusyPoll {
    socket: Option<TcpStream>,
    budget: Duration,
    pub(crate) rhythm: Rhythm,
}

impl BusyPoll {
    /// `None` when `budget` is zero.
    pub(crate) fn new(budget: Duration) -> Option<Self> {
        (!budget.is_zero()).then(|| Self {
            socket: None,
            budget,
            rhythm: Rhythm::default(),
        })
    }

    /// Reads what arrives on `stream` within the budget into `buf`; false when nothing
    /// did (or the socket has an error or end of stream for the usual path to see).
    pub(crate) fn spin(&mut self, stream: &impl AsFd, buf: &mut BytesMut) -> bool {
        let Some(seat) = Budget::global().seat() else {
            return false;
        };
        if self.socket.is_none() {
            self.socket = stream
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(TcpStream::from);
        }
        let Some(socket) = &self.socket else {
            return false;
        };
        let mut chunk = [0u8; SPIN_READ];
        let read = seat.spin(self.budget, || match (&*socket).read(&mut chunk) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            other => Some(other),
        });
        match read {
            Some(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                self.rhythm.spun(true);
                true
            }
            // An error or end of stream: the usual path sees it.
            Some(_) => false,
            None => {
                self.rhythm.spun(false);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn only_a_synchronous_client_spins_and_empty_spins_back_off() {
        let mut r = Rhythm::default();
        for _ in 0..SYNC_STREAK - 1 {
            r.request(true);
        }
        assert!(!r.may_spin(), "not yet synchronous");
        r.request(true);
        assert!(r.may_spin());
        r.request(false);
        assert!(!r.may_spin(), "a pipelining client never spins");
        for _ in 0..SYNC_STREAK {
            r.request(true);
        }
        // 1, 2, 4 ... chances skipped after each empty spin, at most 64.
        let mut expected = 1;
        for _ in 0..9 {
            r.spun(false);
            let skipped = std::iter::from_fn(|| Some(r.may_spin()))
                .take_while(|&spin| !spin)
                .count();
            assert_eq!(skipped, expected);
            expected = (expected * 2).min(busy_poll::MAX_SKIP as usize);
        }
        r.spun(true);
        assert!(r.may_spin());
    }

    #[test]
    fn a_waiting_request_is_caught_and_silence_ends_within_the_budget() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut poll = BusyPoll::new(Duration::from_micros(200)).unwrap();
        let mut buf = BytesMut::new();
        if Budget::global().max() == 0 {
            assert!(!poll.spin(&server, &mut buf), "no spare core: never spins");
            return;
        }
        assert!(!poll.spin(&server, &mut buf), "nothing was sent");
        std::io::Write::write_all(&mut client, b"request").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !poll.spin(&server, &mut buf) {
            assert!(Instant::now() < deadline, "the request was never caught");
        }
        assert_eq!(&buf[..], b"request");
        drop(client);
        assert!(
            !poll.spin(&server, &mut buf),
            "end of stream is left to the usual path"
        );
    }
}
