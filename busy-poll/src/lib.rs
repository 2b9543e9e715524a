//! One process-wide budget for busy-polling, shared by every driver of the process,
//! and the back-off of a poller that keeps finding nothing.
//!
//! A server thread that waits for a client's next request or datagram sleeps in the
//! kernel and is woken through the scheduler (in a virtual machine, through the
//! hypervisor too), which can cost more than the client takes to answer. Polling the
//! socket for a few dozen microseconds first saves that wake-up. The NBD and TFTP
//! drivers both do it; this crate is what they share, so that together they never
//! spin more threads than the machine has spare cores:
//!
//! * [`Budget::global`]: at most one spinner per core beyond the first, in the whole
//!   process (none on a single core, where spinning would only delay the client it
//!   waits for). A poller takes a [`Seat`] before it spins and gives it back when the
//!   seat is dropped; when none is free, it sleeps as usual.
//! * [`Seat::spin`]: polls until the poll answers or the time is up.
//! * [`Backoff`]: a spin that ends empty-handed makes the poller skip its next 1, 2,
//!   4 ... 64 chances, so a client slower than the spin (or gone idle) costs next to
//!   nothing; a spin that catches something resets it.
//!
//! What this crate is not: it does no I/O and knows no socket. The drivers poll their
//! own (non-blocking) sockets inside [`Seat::spin`].
//!
//! ```
//! use std::time::Duration;
//! use busy_poll::{Backoff, Budget};
//!
//! let budget = Budget::new(1);
//! let mut backoff = Backoff::default();
//! let mut polls = 0;
//! if backoff.try_spin()
//!     && let Some(seat) = budget.seat()
//! {
//!     // The second poll finds the "datagram".
//!     let caught = seat.spin(Duration::from_millis(50), || {
//!         polls += 1;
//!         (polls == 2).then_some("datagram")
//!     });
//!     assert!(budget.seat().is_none(), "one seat only");
//!     backoff.spun(caught.is_some());
//!     assert_eq!(caught, Some("datagram"));
//! }
//! assert_eq!(budget.spinning(), 0, "the seat went back when dropped");
//! ```

#![forbid(unsafe_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How many pollers may spin at once.
#[derive(Debug)]
pub struct Budget {
    spinning: AtomicUsize,
    max: usize,
}

impl Budget {
    /// A budget of `max` spinners (tests and embedders with their own rule; drivers
    /// use [`Budget::global`]).
    pub const fn new(max: usize) -> Self {
        Self {
            spinning: AtomicUsize::new(0),
            max,
        }
    }

    /// The process's budget: one spinner per core beyond the first, shared by every
    /// driver in the process.
    pub fn global() -> &'static Budget {
        static GLOBAL: OnceLock<Budget> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Budget::new(cores - 1)
        })
    }

    /// The most spinners at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Spinners now.
    pub fn spinning(&self) -> usize {
        self.spinning.load(Ordering::Acquire)
    }

    /// A place among the spinners, if one is free; given back when dropped.
    pub fn seat(&self) -> Option<Seat<'_>> {
        self.spinning
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Seat(self))
    }
}

/// A place among a [`Budget`]'s spinners, given back when dropped.
#[derive(Debug)]
pub struct Seat<'a>(&'a Budget);

impl Seat<'_> {
    /// Calls `poll` until it answers (`Some`) or `limit` has passed since the first
    /// call (`None`); `poll` is called at least once.
    pub fn spin<T>(&self, limit: Duration, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
        let start = Instant::now();
        loop {
            if let Some(answer) = poll() {
                return Some(answer);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::hint::spin_loop();
        }
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.0.spinning.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The longest run of chances skipped after empty spins.
pub const MAX_SKIP: u32 = 64;

/// When a poller spins: every chance, until a spin ends empty-handed; then it skips
/// the next 1, 2, 4 ... [`MAX_SKIP`] chances, doubling after each empty spin.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Chances still to skip.
    skip: u32,
    /// Chances to skip after the next empty spin.
    next: u32,
}

impl Backoff {
    /// Whether this chance may spin (a skipped chance counts down the back-off).
    pub fn try_spin(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// Records how a spin ended: `caught` when it found what it waited for.
    pub fn spun(&mut self, caught: bool) {
        if caught {
            *self = Self::default();
        } else {
            self.next = (self.next * 2).clamp(1, MAX_SKIP);
            self.skip = self.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn never_more_seats_than_the_budget_and_each_comes_back_when_dropped() {
        let budget = Budget::new(2);
        let a = budget.seat();
        let b = budget.seat();
        assert!(a.is_some() && b.is_some());
        assert!(budget.seat().is_none(), "a third spinner");
        assert_eq!(budget.spinning(), 2);
        drop(a);
        assert_eq!(budget.spinning(), 1);
        let c = budget.seat();
        assert!(c.is_some(), "the seat given back is taken again");
        drop((b, c));
        assert_eq!(budget.spinning(), 0);
        assert!(
            Budget::new(0).seat().is_none(),
            "no spare core: nobody spins"
        );
    }

    #[test]
    fn threads_racing_for_seats_never_hold_more_than_the_budget() {
        let budget = Arc::new(Budget::new(3));
        let most = Arc::new(AtomicUsize::new(0));
        let over = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (budget, most, over) = (budget.clone(), most.clone(), over.clone());
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        if let Some(_seat) = budget.seat() {
                            let now = budget.spinning();
                            most.fetch_max(now, Ordering::AcqRel);
                            if now > budget.max() {
                                over.store(true, Ordering::Release);
                            }
                            std::hint::spin_loop();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(!over.load(Ordering::Acquire), "more than 3 seats were held");
        assert!(most.load(Ordering::Acquire) <= 3);
        assert_eq!(budget.spinning(), 0, "every seat came back");
    }

    #[test]
    fn the_global_budget_is_one_per_spare_core_and_shared() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Budget::global().max(), cores - 1);
        assert!(std::ptr::eq(Budget::global(), Budget::global()));
    }

    #[test]
    fn a_spin_ends_with_the_answer_or_when_its_time_is_up() {
        let budget = Budget::new(1);
        let seat = budget.seat().unwrap();
        let mut n = 0;
        assert_eq!(
            seat.spin(Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        let start = Instant::now();
        let mut calls = 0;
        assert_eq!(
            seat.spin(Duration::from_micros(200), || {
                calls += 1;
                None::<()>
            }),
            None
        );
        assert!(calls >= 1);
        assert!(start.elapsed() >= Duration::from_micros(200));
        assert_eq!(
            seat.spin(Duration::ZERO, || Some(1)),
            Some(1),
            "polled once"
        );
    }

    #[test]
    fn empty_spins_back_off_and_a_catch_resets() {
        let mut b = Backoff::default();
        assert!(b.try_spin());
        b.spun(false);
        // 1, then 2, then 4 ... skipped chances after each empty spin, at most MAX_SKIP.
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
}
