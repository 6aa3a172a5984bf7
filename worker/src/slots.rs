//! How many jobs run at once: the operator's number, not the broker's.
//!
//! Each queue's consumer has its own prefetch, so with one prefetch per queue a worker would
//! run several times `KILN_WORKER_CONCURRENCY` jobs. A delivery therefore waits here for a
//! slot before its job starts: the queues without an override share `KILN_WORKER_CONCURRENCY`
//! slots, and a queue with `KILN_CONCURRENCY_<QUEUE>` has that many of its own (I/O-bound
//! work may want many, video one). Quorum queues refuse a channel-wide (global) QoS, so the
//! broker cannot do this. Deliveries waiting for a slot are counted per queue: the heartbeat
//! reports them, and the rescuer allows for them.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use kiln_core::{Config, jobs::QueueKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The worker's slots; cheap to clone.
#[derive(Clone)]
pub struct Slots {
    shared: (Arc<Semaphore>, u16),
    own: Vec<(QueueKind, Arc<Semaphore>, u16)>,
    waiting: Arc<[AtomicI64; QueueKind::ALL.len()]>,
}

impl Slots {
    /// The slots `config` asks for.
    pub fn new(config: &Config) -> Self {
        let own = QueueKind::ALL
            .into_iter()
            .filter_map(|q| {
                let n = config.concurrency_override(q)?;
                Some((q, Arc::new(Semaphore::new(usize::from(n))), n))
            })
            .collect();
        let shared = config.worker_concurrency;
        Self {
            shared: (Arc::new(Semaphore::new(usize::from(shared))), shared),
            own,
            waiting: Arc::new(Default::default()),
        }
    }

    fn pool(&self, queue: QueueKind) -> (&Arc<Semaphore>, u16) {
        self.own
            .iter()
            .find(|(q, ..)| *q == queue)
            .map_or((&self.shared.0, self.shared.1), |(_, s, n)| (s, *n))
    }

    /// Jobs of `queue` that may run at once: also its consumer's prefetch, so a worker holds
    /// no more deliveries of a queue than it could start.
    pub fn limit(&self, queue: QueueKind) -> u16 {
        self.pool(queue).1
    }

    /// Slots of every pool together: the most jobs this worker runs at once.
    pub fn total(&self) -> u32 {
        u32::from(self.shared.1) + self.own.iter().map(|(.., n)| u32::from(*n)).sum::<u32>()
    }

    /// Waits for a slot of `queue`'s pool; the job runs while the permit lives.
    pub async fn acquire(&self, queue: QueueKind) -> OwnedSemaphorePermit {
        let _waiting = Waiting::count(&self.waiting[index(queue)]);
        let permit = self.pool(queue).0.clone().acquire_owned().await;
        permit.expect("the semaphores are never closed")
    }

    /// Deliveries waiting for a slot, per queue: `{"media": 3, ...}`.
    pub fn waiting(&self) -> serde_json::Value {
        QueueKind::ALL
            .into_iter()
            .map(|q| {
                let n = self.waiting[index(q)].load(Ordering::Relaxed).max(0);
                (q.as_str().to_owned(), serde_json::Value::from(n))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Counts one delivery as waiting for as long as it lives, however the wait ends (a slot, or
/// shutdown dropping the wait).
struct Waiting<'a>(&'a AtomicI64);

impl<'a> Waiting<'a> {
    fn count(counter: &'a AtomicI64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn index(queue: QueueKind) -> usize {
    QueueKind::ALL
        .iter()
        .position(|q| *q == queue)
        .expect("every queue is in ALL")
}
