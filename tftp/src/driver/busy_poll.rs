//! Busy-polling a transfer's socket for the client's next datagram.
//!
//! A lock-step transfer waits for one ACK per block. On an idle machine the thread that
//! sleeps for it is woken through the scheduler (and, in a virtual machine, through the
//! hypervisor), which can cost more than the client takes to answer. Polling the socket
//! for a few dozen microseconds before sleeping saves that wake-up on every block, the way
//! the kernel's `busy_read` does for network cards with their own queues (loopback and
//! most virtual cards have none).
//!
//! Spinning costs CPU, so it is bounded: a time budget per wait; a [`Gate`] shared by one
//! server's transfers that lets them spin only while there are no more transfers than
//! spare cores (with more, the server is seldom idle and the cores are better left to
//! the work), and no more of them spinning at once; and a back-off: a wait that ends
//! empty-handed makes the transfer skip the next 1, 2, 4 ... 64 waits, so a client that
//! answers slower than the budget costs almost nothing; an answer caught while spinning
//! resets the back-off.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The longest run of waits skipped after an empty spin.
const MAX_SKIP: u32 = 64;

/// When a server's transfers may spin.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Transfers with a busy-poller.
    transfers: AtomicUsize,
    spinning: AtomicUsize,
    max: usize,
}

impl Gate {
    /// One spinner per core beyond the first (none on a single core, where spinning
    /// would only delay the client it waits for).
    pub(crate) fn per_spare_core() -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Self::new(cores - 1))
    }

    fn new(max: usize) -> Self {
        Self {
            transfers: AtomicUsize::new(0),
            spinning: AtomicUsize::new(0),
            max,
        }
    }

    fn enter(&self) -> Option<Spinning<'_>> {
        if self.transfers.load(Ordering::Acquire) > self.max {
            return None;
        }
        self.spinning
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Spinning(self))
    }
}

/// A place among the spinners, given back when dropped.
struct Spinning<'a>(&'a Gate);

impl Drop for Spinning<'_> {
    fn drop(&mut self) {
        self.0.spinning.fetch_sub(1, Ordering::AcqRel);
    }
}

/// When a transfer spins: every wait, until one ends empty-handed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Waits still to skip.
    skip: u32,
    /// Waits to skip after the next empty spin.
    next: u32,
}

impl Backoff {
    /// Whether this wait may spin (a skipped wait counts down the back-off).
    pub(crate) fn try_spin(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// Records how a spin ended.
    pub(crate) fn spun(&mut self, caught: bool) {
        if caught {
            *self = Self::default();
        } else {
            self.next = (self.next * 2).clamp(1, MAX_SKIP);
            self.skip = self.next;
        }
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
        let _spinning = self.gate.enter()?;
        if self.socket.is_none() {
            self.socket = socket
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(UdpSocket::from);
        }
        let own = self.socket.as_ref()?;
        let start = Instant::now();
        loop {
            match own.recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => {
                    self.backoff.spun(true);
                    return Some(result);
                }
            }
            if start.elapsed() >= self.budget {
                self.backoff.spun(false);
                return None;
            }
            std::hint::spin_loop();
        }
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

    #[test]
    fn empty_spins_back_off_and_a_catch_resets() {
        let mut b = Backoff::default();
        assert!(b.try_spin());
        b.spun(false);
        // 1, then 2, then 4 ... skipped waits after each empty spin, at most MAX_SKIP.
        let mut expected = 1;
        for _ in 0..10 {
            let skipped = std::iter::from_fn(|| Some(b.try_spin()))
                .take_while(|&spin| !spin)
                .count();
            assert_eq!(skipped, expected);
            b.spun(false);
            expected = (expected * 2).min(MAX_SKIP as usize);
        }
        b.spun(true);
        assert!(b.try_spin());
        assert_eq!(b, Backoff::default());
    }

    #[test]
    fn the_gate_admits_its_maximum_while_transfers_are_few() {
        let gate = Gate::new(2);
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
        let gate = Arc::new(Gate::new(1));
        let mut poll = BusyPoll::new(Duration::from_micros(200), gate.clone()).unwrap();
        assert_eq!(gate.transfers.load(Ordering::Acquire), 1);
        let mut buf = [0u8; 16];
        assert!(poll.poll(&server, &mut buf).is_none(), "nothing was sent");
        assert_eq!(gate.spinning.load(Ordering::Acquire), 0);
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
