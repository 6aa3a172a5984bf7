//! CPU-bound work (decode, resize, encode) runs on tokio's blocking threads, but never more at
//! once than the pool allows: more would only thrash the cores and multiply peak memory.

use std::{sync::Arc, time::Duration};

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
        match self.run_within(Duration::MAX, work).await {
            Ok(done) => Ok(done),
            Err(CpuError::Failed(error)) => Err(error),
            Err(CpuError::OverBudget(_)) => unreachable!("no budget is over Duration::MAX"),
        }
    }

    /// [`Self::run`], but gives up waiting once `work` has *run* (not waited for a thread) for
    /// `budget`: the cost is then the input's, the same on every attempt. The work itself goes
    /// on until it ends, holding its thread and permit, since blocking code cannot be stopped.
    pub async fn run_within<T, F>(&self, budget: Duration, work: F) -> Result<T, CpuError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CpuError::Failed("cpu pool closed".to_owned()))?;
        let span = Span::current();
        // The permit moves into the thread: a caller that gives up (a job timeout) cannot
        // cancel blocking work, so the slot stays taken until the work really ends.
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        });
        match tokio::time::timeout(budget, task).await {
            Ok(done) => done.map_err(|e| CpuError::Failed(format!("cpu task failed: {e}"))),
            Err(_) => Err(CpuError::OverBudget(budget)),
        }
    }
}

/// Why CPU work gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuError {
    /// It panicked, or the pool is gone.
    Failed(String),
    /// It ran longer than its budget.
    OverBudget(Duration),
}
