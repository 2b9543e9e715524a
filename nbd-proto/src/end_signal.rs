//! [`EndSignal`]: how an export tells a server that its connections must close (the
//! device it belongs to booted again, an operator ended its session), without the
//! export knowing anything of the server's runtime.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// A one-way, one-time signal: once [`EndSignal::end`] is called, every [`Ended`]
/// future of it (and every clone) completes. Cheap to poll again and again: a future
/// locks only when its task's waker changes.
///
/// ```
/// use nbd_proto::EndSignal;
/// let signal = EndSignal::default();
/// assert!(!signal.is_ended());
/// signal.clone().end();
/// assert!(signal.is_ended());
/// ```
#[derive(Clone, Default)]
pub struct EndSignal(Arc<Shared>);

#[derive(Default)]
struct Shared {
    ended: AtomicBool,
    /// Wakers of pending futures, by future; the first number is the next id.
    wakers: Mutex<(u64, HashMap<u64, Waker>)>,
}

impl std::fmt::Debug for EndSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndSignal")
            .field("ended", &self.is_ended())
            .finish()
    }
}

impl EndSignal {
    /// Fires the signal (idempotent).
    pub fn end(&self) {
        self.0.ended.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut self.0.lock().1);
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// True once fired.
    pub fn is_ended(&self) -> bool {
        self.0.ended.load(Ordering::Acquire)
    }

    /// A future that completes when the signal fires.
    pub fn ended(&self) -> Ended {
        Ended {
            shared: self.0.clone(),
            id: None,
            waker: None,
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Waker>)> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Completes when its [`EndSignal`] fires. Poll it by `&mut` to keep one registration.
#[must_use = "futures do nothing unless polled"]
pub struct Ended {
    shared: Arc<Shared>,
    id: Option<u64>,
    waker: Option<Waker>,
}

impl Future for Ended {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.ended.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let shared = self.shared.clone();
        let mut wakers = shared.lock();
        let id = *self.id.get_or_insert_with(|| {
            wakers.0 += 1;
            wakers.0
        });
        wakers.1.insert(id, cx.waker().clone());
        drop(wakers);
        self.waker = Some(cx.waker().clone());
        // Fired between the first check and the registration: `end` may have taken
        // the wakers before ours was in.
        if self.shared.ended.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.lock().1.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_futures_wake_and_dropped_ones_unregister() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let signal = EndSignal::default();
            let waiting = tokio::spawn(signal.ended());
            let dropped = signal.ended();
            let mut polled = std::pin::pin!(signal.ended());
            // Registered twice through the same task: one entry.
            let _ = futures_poll(&mut polled);
            let _ = futures_poll(&mut polled);
            tokio::task::yield_now().await;
            assert_eq!(signal.0.lock().1.len(), 2);
            drop(dropped);
            signal.end();
            waiting.await.unwrap();
            polled.await;
            signal.ended().await;
            assert!(signal.0.lock().1.is_empty());
        });
    }

    fn futures_poll(f: &mut Pin<&mut Ended>) -> Poll<()> {
        let waker = Waker::noop();
        f.as_mut().poll(&mut Context::from_waker(waker))
    }
}
