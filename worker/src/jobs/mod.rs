//! Job handlers, one module per kind, and how their failures are classified.

pub mod backup;
pub mod cleanup;
pub mod digest;
pub mod email;
pub mod http;
pub mod media;
pub mod noop;
pub mod prune;
pub mod task;
pub mod video;

use std::time::Duration;

use kiln_core::jobs::JobKind;

/// A handler's failure, classified where it happens.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Transient (network, storage, database): another attempt may succeed.
    #[error("{0}")]
    Retry(String),
    /// Permanent (corrupt input, missing data): retrying cannot help, the job goes dead at once.
    #[error("{0}")]
    Abort(String),
    /// Transient, with the wait before the next attempt already decided (a webhook receiver's
    /// `Retry-After` within the delivery's own schedule). Only kinds whose retries wait in
    /// Postgres can wait an arbitrary time; others take their ladder's next step.
    #[error("{error}")]
    RetryIn { error: String, wait: Duration },
    /// Not tried at all (its endpoint is busy): try again after `wait`, the attempt given back.
    /// Only for kinds whose retries wait in Postgres; others retry as usual.
    #[error("{reason}")]
    Defer { reason: String, wait: Duration },
}

/// Classifies any error at the call site: `.retry()?` or `.abort()?`.
pub trait Classify<T> {
    fn retry(self) -> Result<T, JobError>;
    fn abort(self) -> Result<T, JobError>;
}

impl<T, E: std::fmt::Display> Classify<T> for Result<T, E> {
    fn retry(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Retry(e.to_string()))
    }
    fn abort(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::Abort(e.to_string()))
    }
}

/// A video attempt's limit: two ffmpeg runs (ladder and poster) within
/// `KILN_VIDEO_TIMEOUT_SECS` each, and five minutes to store the files.
pub fn video_job_timeout(ffmpeg_limit: Duration) -> Duration {
    ffmpeg_limit * 2 + Duration::from_secs(300)
}

/// How long one attempt of a kind may run before it counts as failed.
pub fn timeout(kind: JobKind) -> Duration {
    match kind {
        JobKind::Media => Duration::from_secs(300),
        // The default; the runner uses `video_job_timeout` (from KILN_VIDEO_TIMEOUT_SECS).
        JobKind::Video => Duration::from_secs(2 * 3_600 + 300),
        JobKind::Email => Duration::from_secs(60),
        JobKind::Backup => Duration::from_secs(3600),
        JobKind::Cleanup => Duration::from_secs(600),
        JobKind::Digest => Duration::from_secs(300),
        JobKind::Prune => Duration::from_secs(120),
        JobKind::Noop => Duration::from_secs(60),
        // Bounded by the request's own time-out (15 s by default) plus the log's writes; the
        // wait for a per-endpoint slot counts too.
        JobKind::Webhook => Duration::from_secs(330),
        // A task's own time-out is at most 300 s.
        JobKind::Task => Duration::from_secs(330),
    }
}
