//! Job contracts: what a job is, the message that carries it, and the payload of each kind.
//!
//! A job is a row in `jobs` first and a message second: the row is the truth (status, attempts,
//! errors) and the message only says "look at job X now".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a job does; each kind is routed to one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Resize an upload into its variants.
    Media,
    /// Transcode a video upload into its renditions and poster (its own queue: a long
    /// transcode never delays images or email).
    Video,
    /// Send one email.
    Email,
    /// Dump Postgres to storage.
    Backup,
    /// Remove orphaned files and expired rows.
    Cleanup,
    /// Email each opted-in tenant a summary of the last day.
    Digest,
    /// Delete finished jobs past their retention, in bounded batches.
    Prune,
    /// Does nothing but succeed: measures the queue itself (`bench/queue.sh`) and checks that
    /// the whole loop (row, message, worker, status) works.
    Noop,
    /// Deliver one event to one webhook endpoint, signed (Standard Webhooks). Its retries are
    /// kept in Postgres (see [`JobKind::retries_in_postgres`]).
    Webhook,
    /// Send one of the app's HTTP tasks, signed like a webhook; its queue's limits decide when
    /// (see `db::tasks`).
    Task,
}

impl JobKind {
    /// Every kind, for declaring bindings.
    pub const ALL: [JobKind; 10] = [
        Self::Media,
        Self::Video,
        Self::Email,
        Self::Backup,
        Self::Cleanup,
        Self::Digest,
        Self::Prune,
        Self::Noop,
        Self::Webhook,
        Self::Task,
    ];

    /// The stored and routed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Media => "media",
            Self::Video => "video",
            Self::Email => "email",
            Self::Backup => "backup",
            Self::Cleanup => "cleanup",
            Self::Digest => "digest",
            Self::Prune => "prune",
            Self::Noop => "noop",
            Self::Webhook => "webhook",
            Self::Task => "task",
        }
    }

    /// Whether a failed attempt's retry waits in Postgres (its row, due at `run_after`, sent
    /// by the outbox relay) rather than in the broker's fixed-delay ladder: deliveries wait as
    /// long as an endpoint's `Retry-After` or their own schedule says, which fixed TTLs cannot.
    pub fn retries_in_postgres(self) -> bool {
        matches!(self, Self::Webhook | Self::Task)
    }

    /// The queue that carries this kind: housekeeping shares one queue so that it never
    /// competes with user-facing work.
    pub fn queue(self) -> QueueKind {
        match self {
            Self::Media => QueueKind::Media,
            Self::Video => QueueKind::Video,
            Self::Email => QueueKind::Email,
            Self::Backup => QueueKind::Backup,
            Self::Cleanup | Self::Digest | Self::Prune | Self::Noop => QueueKind::Maintenance,
            Self::Webhook | Self::Task => QueueKind::Http,
        }
    }
}

/// Every job kind's name with its queue's name, for queries that group by queue.
pub fn kind_queue_names() -> Vec<(String, String)> {
    JobKind::ALL
        .iter()
        .map(|k| (k.as_str().to_owned(), k.queue().as_str().to_owned()))
        .collect()
}

impl std::str::FromStr for JobKind {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

/// One durable queue per kind of work, so a flood of uploads never starves email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    Media,
    /// Transcodes: long and CPU-bound, one at a time per worker by default.
    Video,
    Email,
    Backup,
    Maintenance,
    /// Outgoing HTTP (webhook deliveries): waits on other people's servers, never on a CPU.
    Http,
}

impl QueueKind {
    /// Every queue.
    pub const ALL: [QueueKind; 6] = [
        Self::Media,
        Self::Video,
        Self::Email,
        Self::Backup,
        Self::Maintenance,
        Self::Http,
    ];

    /// The queue's name without the namespace.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Media => "media",
            Self::Video => "video",
            Self::Email => "email",
            Self::Backup => "backup",
            Self::Maintenance => "maintenance",
            Self::Http => "http",
        }
    }
}

/// A value read from the database or a message that this version does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    /// The last attempt failed and another is due.
    Failed,
    /// Out of attempts, or failed permanently; kept for operators.
    Dead,
}

impl JobStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

impl std::str::FromStr for JobStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Dead,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

/// The message body: small, self-describing JSON. The payload is repeated so a consumer can log
/// and route without a query, but the row stays authoritative.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    pub kind: JobKind,
    /// The attempt this message starts (1 for the first).
    pub attempt: i32,
    pub enqueued_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    /// The W3C traceparent the job continues; also sent as the message's `traceparent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Payload of a [`JobKind::Media`] or [`JobKind::Video`] job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaPayload {
    pub media_id: Uuid,
}

/// Payload of a [`JobKind::Webhook`] job: the delivery row (whose id is the job's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookPayload {
    pub delivery_id: Uuid,
}

/// Payload of a [`JobKind::Task`] job: the task row (whose id is the job's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskPayload {
    pub task_id: Uuid,
}

/// Payload of a [`JobKind::Email`] job: one message, validated when it was accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailPayload {
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<String>,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// Where a JSON value holds a NUL character (`\u0000`), as a path such as `data.user.name` or
/// `data[2]`, starting from `root`. Postgres' `jsonb` cannot store one: a payload carrying it
/// would fail the statement that inserts it, so every caller refuses it up front.
pub fn find_nul(value: &serde_json::Value, root: &str) -> Option<String> {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(root.to_owned()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_nul(item, &format!("{root}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(root.to_owned())
            } else {
                find_nul(item, &format!("{root}.{key}"))
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod nul_tests {
    use super::find_nul;

    #[test]
    fn a_nul_is_found_at_any_depth_and_named_by_its_path() {
        let clean = serde_json::json!({"a": ["x", {"b": "y"}], "n": 1});
        assert_eq!(find_nul(&clean, "data"), None);
        let deep = serde_json::json!({"a": ["x", {"b": "y\u{0}"}]});
        assert_eq!(find_nul(&deep, "data").as_deref(), Some("data.a[1].b"));
        let key = serde_json::json!({"k\u{0}": 1});
        assert_eq!(find_nul(&key, "data").as_deref(), Some("data"));
    }
}
