//! Busy-polling a transfer's socket for the client's next datagram.
//!
//! A lock-step transfer waits for one ACK per block. On an idle machine the thread that
//! sleeps for it is woken through the scheduler (and, in a virtual machine, through the
//! hypervisor), which can cost more than the client takes to answer. Polling the socket
//! for a few dozen microseconds before sleeping saves that wake-up on every block, the way
//! the kernel's `busy_read` does for network cards with their own queues (loopback and
//! most virtual cards have none).
//!
//! Spinning costs CPU, so it is bounded (the `busy-poll` crate): a time budget per
//! wait; at most one spinning thread per spare core in the whole process, NBD
//! connections included ([`Budget::global`]); a [`Gate`] shared by one server's
//! transfers that lets them spin only while there are no more transfers than spare
//! cores (with more, the server is seldom idle and the cores are better left to the
//! work); and a back-off: a wait that ends empty-handed makes the transfer skip the
//! next 1, 2, 4 ... 64 waits, so a client that answers slower than the budget costs
//! almost nothing; an answer caught while spinning resets the back-off.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use busy_poll::{Backoff, Budget, Seat};

/// When a server's transfers may spin.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Transfers with a busy-poller.
    transfers: AtomicUsize,
    /// The spinners allowed: the process's, shared with every other driver.
    budget: &'static Budget,
}

impl Gate {
    /// A gate on the process's budget (one spinner per spare core, in all).
    pub(crate) fn per_spare_core() -> Arc<Self> {
        Arc::new(Self::new(Budget::global()))
    }

    fn new(budget: &'static Budget) -> Self {
        Self {
            transfers: AtomicUsize::new(0),
            budget,
        }
    }

    fn enter(&self) -> Option<Seat<'static>> {
        if self.transfers.load(Ordering::Acquire) > self.budget.max() {
            return None;
        }
        self.budget.seat()
    }
}

/// One transfer's busy-poller, with a second handle on its socket (read without
/// waiting), duplicated at the first spin so transfers that never spin hold no extra
/// descriptor.
#[derive(Debug)]
pub(crate) struct BusyPoll {
    socket: Option<UdpSocket>,
    budget: Duration,
    gate: Arc<Gate>,
    backoff: Backoff,
}

impl BusyPoll {
    /// Polls for up to `budget` per wait; `None` when the budget is zero.
    pub(crate) fn new(budget: Duration, gate: Arc<Gate>) -> Option<Self> {
        if budget.is_zero() {
            return None;
        }
        gate.transfers.fetch_add(1, Ordering::AcqRel);
        Some(Self {
            socket: None,
            budget,
            gate,
            backoff: Backoff::default(),
        })
    }

    /// The next datagram on `socket` (non-blocking, as tokio's are) if one arrives
    /// within the budget; `None` to go and sleep.
    pub(crate) fn poll(
        &mut self,
        socket: &impl AsFd,
        buf: &mut [u8],
    ) -> Option<io::Result<(usize, SocketAddr)>> {
        if !self.backoff.try_spin() {
            return None;
        }
        let seat = self.gate.enter()?;
        if self.socket.is_none() {
            self.socket = socket
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(UdpSocket::from);
        }
        let own = self.socket.as_ref()?;
        let received = seat.spin(self.budget, || match own.recv_from(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            result => Some(result),
        });
        self.backoff.spun(received.is_some());
        received
    }
}

impl Drop for BusyPoll {
    fn drop(&mut self) {
        self.gate.transfers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget of its own for a test (the process's is shared by every test).
    fn budget(max: usize) -> &'static Budget {
        Box::leak(Box::new(Budget::new(max)))
    }

    #[test]
    fn the_gate_admits_its_maximum_while_transfers_are_few() {
        let gate = Gate::new(budget(2));
        let a = gate.enter();
        let b = gate.enter();
        assert!(a.is_some() && b.is_some());
        assert!(gate.enter().is_none());
        drop(a);
        assert!(gate.enter().is_some());
        drop(b);
        gate.transfers.store(3, Ordering::Release);
        assert!(gate.enter().is_none(), "more transfers than spare cores");
    }

    #[test]
    fn a_waiting_datagram_is_caught_and_silence_ends_within_the_budget() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gate = Arc::new(Gate::new(budget(1)));
        let mut poll = BusyPoll::new(Duration::from_micros(200), gate.clone()).unwrap();
        assert_eq!(gate.transfers.load(Ordering::Acquire), 1);
        let mut buf = [0u8; 16];
        assert!(poll.poll(&server, &mut buf).is_none(), "nothing was sent");
        assert_eq!(gate.budget.spinning(), 0);
        // The empty spin made the next wait skip; the one after spins again.
        client
            .send_to(b"ack", server.local_addr().unwrap())
            .unwrap();
        assert!(poll.poll(&server, &mut buf).is_none());
        let (n, from) = poll.poll(&server, &mut buf).unwrap().unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"ack"[..], client.local_addr().unwrap())
        );
        drop(poll);
        assert_eq!(gate.transfers.load(Ordering::Acquire), 0);
    }
}
