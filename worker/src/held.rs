//! The jobs this worker runs now, listed in every heartbeat: a job its worker stops listing
//! (an attempt that ended without its outcome recorded, a start whose answer was lost) is no
//! longer held, so the rescuer or the next message takes it over (see `kiln_core::db::workers`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use uuid::Uuid;

/// The set of jobs being run here; cheap to clone. Counted, because two deliveries of one job
/// may be in this process at once (the second is dropped, and its end must not unlist the first).
#[derive(Clone, Default)]
pub struct Held(Arc<Mutex<HashMap<Uuid, usize>>>);

impl Held {
    /// Lists `id` until the returned guard is dropped. Called before the attempt starts, so a
    /// heartbeat written after the start always lists it.
    pub fn hold(&self, id: Uuid) -> Holding {
        *self.lock().entry(id).or_default() += 1;
        Holding {
            held: self.clone(),
            id,
        }
    }

    /// The jobs listed now.
    pub fn snapshot(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        // Never held across an await, and a panic elsewhere leaves the map consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps one job listed while it lives.
pub struct Holding {
    held: Held,
    id: Uuid,
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut map = self.held.lock();
        if let Some(count) = map.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_stays_listed_until_its_last_holder_is_done() {
        let held = Held::default();
        let id = Uuid::now_v7();
        let first = held.hold(id);
        let second = held.hold(id);
        drop(second);
        assert_eq!(held.snapshot(), [id]);
        drop(first);
        assert!(held.snapshot().is_empty());
    }
}
