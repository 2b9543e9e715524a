//! The connections still in their handshake, oldest first, so a flood of clients that
//! connect and never finish (or never get an export) cannot hold every slot: past
//! [`ServerConfig::max_handshakes`](super::server::ServerConfig::max_handshakes), or
//! when every connection slot is taken, the oldest handshake is ended for the newcomer.
//! A real client finishes its handshake in a round trip or two, so it is never the
//! oldest for long.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

#[derive(Clone, Default)]
pub(crate) struct Handshaking(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    next: u64,
    queue: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// One connection's place in the queue; leaving it (dropping) takes it out.
pub(crate) struct Place {
    handshaking: Handshaking,
    id: u64,
    /// Fires when the connection is evicted.
    pub(crate) evicted: oneshot::Receiver<()>,
}

impl Handshaking {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a new connection.
    pub(crate) fn enter(&self) -> Place {
        let (tx, evicted) = oneshot::channel();
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        inner.queue.push_back((id, tx));
        Place {
            handshaking: self.clone(),
            id,
            evicted,
        }
    }

    /// Connections in their handshake now.
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Ends the oldest handshake; false when there is none.
    pub(crate) fn evict_oldest(&self) -> bool {
        let oldest = self.lock().queue.pop_front();
        oldest.is_some_and(|(_, tx)| {
            // Its task may be gone already: then its slot is free anyway.
            let _ = tx.send(());
            true
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.handshaking
            .lock()
            .queue
            .retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_first_and_leavers_leave_no_trace() {
        let h = Handshaking::default();
        let mut first = h.enter();
        let second = h.enter();
        let mut third = h.enter();
        drop(second);
        assert_eq!(h.len(), 2);
        assert!(h.evict_oldest());
        assert!(first.evicted.try_recv().is_ok());
        assert!(third.evicted.try_recv().is_err());
        drop(first);
        assert_eq!(h.len(), 1);
        drop(third);
        assert!(!h.evict_oldest());
    }
}
