//! Which connections an HTTP listener takes: at most `per_source` per address, and at
//! most `max` in all; when full, the oldest connection that has not sent a request yet
//! is closed to make room, so clients that connect and stall (from one address or from
//! many) cannot lock others out.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The connections a listener holds.
#[derive(Clone)]
pub(super) struct Admission {
    held: Arc<Mutex<Held>>,
    /// Connections served at once.
    max: usize,
    /// Connections one address may hold at once.
    per_source: usize,
}

#[derive(Default)]
struct Held {
    next: u64,
    /// By age: the oldest first.
    connections: BTreeMap<u64, Arc<Connection>>,
    per_source: HashMap<IpAddr, usize>,
}

struct Connection {
    ip: IpAddr,
    /// True once it sent a request.
    served: AtomicBool,
    evict: Notify,
}

/// One connection's place, given back when dropped.
pub(super) struct Ticket {
    admission: Admission,
    id: u64,
    connection: Arc<Connection>,
}

impl Admission {
    pub(super) fn new(max: usize, per_source: usize) -> Self {
        Self {
            held: Arc::default(),
            max: max.max(1),
            per_source: per_source.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection from `ip`, unless that address holds its share
    /// already or every place is taken by connections that are being served.
    pub(super) fn admit(&self, ip: IpAddr) -> Option<Ticket> {
        let mut held = self.lock();
        if held.per_source.get(&ip).copied().unwrap_or(0) >= self.per_source {
            return None;
        }
        if held.connections.len() >= self.max {
            let idle = held
                .connections
                .iter()
                .find(|(_, c)| !c.served.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            let connection = Self::release(&mut held, idle)?;
            connection.evict.notify_one();
        }
        let id = held.next;
        held.next += 1;
        let connection = Arc::new(Connection {
            ip,
            served: AtomicBool::new(false),
            evict: Notify::new(),
        });
        held.connections.insert(id, connection.clone());
        *held.per_source.entry(ip).or_default() += 1;
        Some(Ticket {
            admission: self.clone(),
            id,
            connection,
        })
    }

    fn release(held: &mut Held, id: u64) -> Option<Arc<Connection>> {
        let connection = held.connections.remove(&id)?;
        if let Some(count) = held.per_source.get_mut(&connection.ip) {
            *count -= 1;
            if *count == 0 {
                held.per_source.remove(&connection.ip);
            }
        }
        Some(connection)
    }
}

/// Tells the admission that a connection sends requests.
#[derive(Clone)]
pub(super) struct Serving(Arc<Connection>);

impl Serving {
    /// The connection sent a request: it is no longer the first to go.
    pub(super) fn mark(&self) {
        self.0.served.store(true, Ordering::Relaxed);
    }
}

impl Ticket {
    /// What the connection's service marks each request with.
    pub(super) fn serving(&self) -> Serving {
        Serving(self.connection.clone())
    }

    /// Completes when the connection must close to make room for another.
    pub(super) fn evicted(&self) -> impl Future<Output = ()> + use<> {
        let connection = self.connection.clone();
        async move { connection.evict.notified().await }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Gone already when it was evicted.
        Admission::release(&mut self.admission.lock(), self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_its_share_only() {
        let admission = Admission::new(10, 3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let held: Vec<_> = (0..3).filter_map(|_| admission.admit(ip)).collect();
        assert_eq!(held.len(), 3);
        assert!(admission.admit(ip).is_none());
        assert!(admission.admit([10, 0, 0, 2].into()).is_some());
        drop(held);
        assert!(admission.admit(ip).is_some());
    }

    #[test]
    fn when_full_the_oldest_idle_connection_makes_room() {
        let admission = Admission::new(3, 8);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let busy = admission.admit(ip(1)).unwrap();
        busy.serving().mark();
        let idle_old = admission.admit(ip(2)).unwrap();
        let idle_new = admission.admit(ip(3)).unwrap();
        let evicted = idle_old.evicted();
        let newcomer = admission.admit(ip(4)).expect("room made");
        // The oldest idle one was told to go; the busy one and the newer idle one stay.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), evicted)
                .await
                .expect("the oldest idle connection was evicted");
        });
        assert_eq!(admission.lock().connections.len(), 3);
        idle_new.serving().mark();
        newcomer.serving().mark();
        // Everyone is being served: no room for more.
        assert!(admission.admit(ip(5)).is_none());
        drop((busy, idle_old));
    }
}
