//! Schemas of answers the handlers build as JSON values (lists, counts, records kept in
//! `kiln_core`): written out here so the document says exactly what is sent. The conformance
//! run (schemathesis in `.ci/run`) checks every answer against them.

use chrono::{DateTime, NaiveDate, Utc};
use kiln_core::db::{api_keys::KeyRecord, backups::Backup};
use serde::Serialize;
use utoipa::{
    ToSchema,
    openapi::{RefOr, Schema},
};
use uuid::Uuid;

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `not_found`, `rate_limited`, `quota_exceeded`, …
    pub code: String,
    /// For people; may change.
    pub message: String,
    /// Per-field problems of a request body (422 `validation_failed`), by field path.
    #[schema(value_type = Option<Object>)]
    pub fields: Option<serde_json::Value>,
    /// Which daily quota a `quota_exceeded` names: `emails`, `uploads` or `upload_bytes`.
    pub quota: Option<String>,
    /// That quota's daily limit.
    pub limit: Option<u64>,
}

/// The error body's schema, inline (shared by every error response).
pub fn error_schema() -> RefOr<Schema> {
    <ErrorBody as utoipa::PartialSchema>::schema()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok`, `degraded` (Redis or RabbitMQ down: still serving) or `unavailable` (Postgres).
    pub status: String,
    pub checks: ReadinessChecks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    pub postgres: Check,
    pub redis: Check,
    pub rabbitmq: Check,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub ok: bool,
}

/// A request answered by a job: 202 with the job's id.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAccepted {
    pub job_id: Uuid,
    /// `queued`.
    pub status: String,
}

/// A deleted media, and the job removing its files.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaDeleted {
    pub id: Uuid,
    /// `deleted`.
    pub status: String,
    pub job_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminJobList {
    pub jobs: Vec<crate::routes::admin::jobs::AdminJobView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    pub retried: usize,
    /// How many of them were published at once (the rest go through the outbox).
    pub published: usize,
    pub job_ids: Vec<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Discarded {
    pub discarded: usize,
    pub job_ids: Vec<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    pub window_minutes: i64,
    pub broker_reachable: bool,
    pub queues: Vec<crate::routes::admin::queues::QueueView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<Backup>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    pub name: String,
    pub cron: String,
    pub kind: String,
    /// `skip` or `once`.
    pub missed_policy: String,
    pub last_fire: Option<DateTime<Utc>>,
    pub next_fire: Option<DateTime<Utc>>,
    pub missed_ticks: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyRecord>,
}

/// A new key: the record and, in this one answer only, the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub record: KeyRecord,
    pub key: String,
}

/// A rotation: the new key (shown once) and the old key's record.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    #[serde(flatten)]
    pub record: KeyRecord,
    pub key: String,
    pub replaced: KeyRecord,
}

/// One tenant's usage on one UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDayView {
    pub day: NaiveDate,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageTotals {
    pub uploads: i64,
    pub upload_bytes: i64,
    pub variant_bytes: i64,
    /// Originals plus variants.
    pub stored_bytes: i64,
    pub processing_seconds: f64,
    /// Recipients of emails accepted (Kiln's notifications included).
    pub emails_accepted: i64,
    pub emails_sent: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsage {
    pub tenant: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub totals: UsageTotals,
    pub days: Vec<UsageDayView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AllUsage {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Busiest (by stored bytes) first.
    pub tenants: Vec<TenantUsageEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsageEntry {
    pub tenant: String,
    pub totals: UsageTotals,
    pub days: Vec<UsageDayView>,
}
