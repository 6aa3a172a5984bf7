//! CPU-bound work (decode, resize, encode) runs on tokio's blocking threads, but never more at
//! once than the pool allows: more would only thrash the cores and multiply peak memory.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::Span;

/// A bounded gate in front of `spawn_blocking`; cheap to clone.
#[derive(Clone)]
pub struct CpuPool {
    permits: Arc<Semaphore>,
}

impl CpuPool {
    /// Allows `threads` CPU tasks at once.
    pub fn new(threads: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// Runs `work` on a blocking thread within the caller's span. A panic inside `work` comes
    /// back as an `Err` for that job alone.
    pub async fn run<T, F>(&self, work: F) -> Result<T, String>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "cpu pool closed".to_owned())?;
        let span = Span::current();
        // The permit moves into the thread: a caller that gives up (a job timeout) cannot
        // cancel blocking work, so the slot stays taken until the work really ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .await
        .map_err(|e| format!("cpu task failed: {e}"))
    }
}
