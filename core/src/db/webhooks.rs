//! The `webhook_endpoints` and `webhook_deliveries` tables: a tenant's endpoints, and the log of
//! every event sent to one of them. A delivery is a `webhook` job with the same id, inserted by
//! [`emit`] in the transaction of the change it reports (so it is sent if and only if that
//! change commits), and pruned with its job.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::jobs::{Job, NewJob};
use crate::jobs::{JobKind, WebhookPayload};

/// Every event type, and whether only endpoints made with an admin key may receive it.
pub const EVENT_TYPES: [(&str, bool); 8] = [
    ("media.ready", false),
    ("media.failed", false),
    ("media.deleted", false),
    ("email.sent", false),
    ("email.failed", false),
    ("job.dead", false),
    ("backup.succeeded", true),
    ("backup.failed", true),
];

/// An endpoint, secrets included (never answered as such: see the API's view of it).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub admin: bool,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// The secrets that sign a delivery now: the current one, and the one it replaced while
    /// the rotation's overlap lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && until > now
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// A new endpoint.
pub struct NewEndpoint<'a> {
    pub tenant: &'a str,
    pub url: &'a str,
    pub events: &'a [String],
    pub description: &'a str,
    pub enabled: bool,
    pub admin: bool,
    pub secret: &'a str,
}

/// Inserts an endpoint.
pub async fn insert_endpoint(
    db: impl PgExecutor<'_>,
    new: &NewEndpoint<'_>,
) -> Result<Endpoint, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "INSERT INTO webhook_endpoints (id, tenant, url, events, description, enabled, admin,
                                        secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, tenant, url, events, description, enabled, admin, secret,
                   previous_secret, previous_secret_until, disabled_reason, failing_since,
                   created_at, updated_at",
        Uuid::now_v7(),
        new.tenant,
        new.url,
        new.events,
        new.description,
        new.enabled,
        new.admin,
        new.secret,
    )
    .fetch_one(db)
    .await
}

/// A tenant's endpoints, oldest first.
pub async fn list_endpoints(
    db: impl PgExecutor<'_>,
    tenant: &str,
) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "SELECT id, tenant, url, events, description, enabled, admin, secret, previous_secret,
                previous_secret_until, disabled_reason, failing_since, created_at, updated_at
         FROM webhook_endpoints WHERE tenant = $1 ORDER BY created_at LIMIT 1000",
        tenant,
    )
    .fetch_all(db)
    .await
}

/// Every tenant's endpoints, for operators: disabled ones first, then oldest first.
pub async fn list_all_endpoints(
    db: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "SELECT id, tenant, url, events, description, enabled, admin, secret, previous_secret,
                previous_secret_until, disabled_reason, failing_since, created_at, updated_at
         FROM webhook_endpoints ORDER BY enabled, created_at LIMIT $1",
        limit,
    )
    .fetch_all(db)
    .await
}

/// An endpoint by id, whoever owns it (the worker's read).
pub async fn find_endpoint(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "SELECT id, tenant, url, events, description, enabled, admin, secret, previous_secret,
                previous_secret_until, disabled_reason, failing_since, created_at, updated_at
         FROM webhook_endpoints WHERE id = $1",
        id,
    )
    .fetch_optional(db)
    .await
}

/// An endpoint as its tenant may see it.
pub async fn find_endpoint_for_tenant(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "SELECT id, tenant, url, events, description, enabled, admin, secret, previous_secret,
                previous_secret_until, disabled_reason, failing_since, created_at, updated_at
         FROM webhook_endpoints WHERE id = $1 AND tenant = $2",
        id,
        tenant,
    )
    .fetch_optional(db)
    .await
}

/// What a PATCH may change; `None` keeps the value.
#[derive(Default)]
pub struct EndpointChange<'a> {
    pub url: Option<&'a str>,
    pub events: Option<&'a [String]>,
    pub description: Option<&'a str>,
    pub enabled: Option<bool>,
}

/// Changes an endpoint of `tenant`. Enabling it again clears why Kiln disabled it and its run
/// of failures, so it gets a fresh `KILN_WEBHOOK_DISABLE_AFTER`.
pub async fn update_endpoint(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
    change: &EndpointChange<'_>,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "UPDATE webhook_endpoints
         SET url = coalesce($3, url), events = coalesce($4, events),
             description = coalesce($5, description), enabled = coalesce($6, enabled),
             disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,
             failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END,
             updated_at = now()
         WHERE id = $1 AND tenant = $2
         RETURNING id, tenant, url, events, description, enabled, admin, secret,
                   previous_secret, previous_secret_until, disabled_reason, failing_since,
                   created_at, updated_at",
        id,
        tenant,
        change.url,
        change.events,
        change.description,
        change.enabled,
    )
    .fetch_optional(db)
    .await
}

/// Deletes an endpoint of `tenant` and its delivery log; returns whether there was one. Its
/// pending deliveries' jobs find no row and end without a request.
pub async fn delete_endpoint(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND tenant = $2",
        id,
        tenant
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Replaces the secret; the old one keeps signing for `overlap` (zero: not at all).
pub async fn rotate_secret(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant: &str,
    secret: &str,
    overlap: std::time::Duration,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as!(
        Endpoint,
        "UPDATE webhook_endpoints
         SET previous_secret = secret, secret = $3,
             previous_secret_until = now() + make_interval(secs => $4), updated_at = now()
         WHERE id = $1 AND tenant = $2
         RETURNING id, tenant, url, events, description, enabled, admin, secret,
                   previous_secret, previous_secret_until, disabled_reason, failing_since,
                   created_at, updated_at",
        id,
        tenant,
        secret,
        overlap.as_secs_f64(),
    )
    .fetch_optional(db)
    .await
}

/// Disables an endpoint for `reason` unless it is disabled already; returns whether this call
/// disabled it.
pub async fn disable_endpoint(
    db: impl PgExecutor<'_>,
    id: Uuid,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let disabled = sqlx::query!(
        "UPDATE webhook_endpoints
         SET enabled = false, disabled_reason = $2, updated_at = now()
         WHERE id = $1 AND enabled",
        id,
        reason,
    )
    .execute(db)
    .await?;
    Ok(disabled.rows_affected() == 1)
}

/// Records a failed attempt against the endpoint: starts its run of failures if none was
/// running, and disables it once that run is older than `disable_after`. Returns whether this
/// call disabled it (its tenant is then told).
pub async fn record_endpoint_failure(
    db: &mut PgConnection,
    id: Uuid,
    disable_after: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_endpoints SET failing_since = now()
         WHERE id = $1 AND failing_since IS NULL",
        id,
    )
    .execute(&mut *db)
    .await?;
    let reason = format!(
        "every delivery failed for longer than {}",
        humanize(disable_after)
    );
    let disabled = sqlx::query!(
        "UPDATE webhook_endpoints
         SET enabled = false, disabled_reason = $3, updated_at = now()
         WHERE id = $1 AND enabled AND failing_since < now() - make_interval(secs => $2)",
        id,
        disable_after.as_secs_f64(),
        reason,
    )
    .execute(&mut *db)
    .await?;
    Ok(disabled.rows_affected() == 1)
}

/// Ends the endpoint's run of failures (written only when one was running).
pub async fn record_endpoint_success(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_endpoints SET failing_since = NULL
         WHERE id = $1 AND failing_since IS NOT NULL",
        id,
    )
    .execute(db)
    .await?;
    Ok(())
}

fn humanize(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{} hours", s / 3_600),
        s => format!("{s} seconds"),
    }
}

/// One event, as [`emit`] sends it.
pub struct Event<'a> {
    /// The tenant it concerns; `None` for the operators' events (`backup.*`), which go to the
    /// endpoints made with an admin key.
    pub tenant: Option<&'a str>,
    pub event_type: &'static str,
    pub data: serde_json::Value,
    /// The trace the delivery continues.
    pub traceparent: Option<String>,
}

/// Enqueues one delivery of `event` to each enabled endpoint that subscribed to it, in the
/// caller's transaction; returns the jobs to publish once it commits (the relay sends them
/// otherwise). The body is fixed here, so every attempt signs the same bytes.
pub async fn emit(
    conn: &mut PgConnection,
    event: &Event<'_>,
    max_attempts: i32,
) -> Result<Vec<Job>, sqlx::Error> {
    let endpoints = sqlx::query!(
        "SELECT id, tenant FROM webhook_endpoints
         WHERE enabled
           AND (tenant = $1 OR ($1::text IS NULL AND admin))
           AND ($2 = ANY(events) OR '*' = ANY(events))",
        event.tenant,
        event.event_type,
    )
    .fetch_all(&mut *conn)
    .await?;
    if endpoints.is_empty() {
        return Ok(Vec::new());
    }
    let body = event_body(event.event_type, &event.data);
    let mut jobs = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let id = Uuid::now_v7();
        let job = super::jobs::insert(
            &mut *conn,
            &NewJob {
                id,
                tenant: Some(&endpoint.tenant),
                kind: JobKind::Webhook,
                payload: json!(WebhookPayload { delivery_id: id }),
                max_attempts,
                traceparent: event.traceparent.clone(),
            },
        )
        .await?;
        sqlx::query!(
            "INSERT INTO webhook_deliveries (id, endpoint_id, tenant, event_type, body)
             VALUES ($1, $2, $3, $4, $5)",
            id,
            endpoint.id,
            endpoint.tenant,
            event.event_type,
            body,
        )
        .execute(&mut *conn)
        .await?;
        metrics::counter!("kiln_webhook_events_total", "type" => event.event_type).increment(1);
        jobs.push(job);
    }
    Ok(jobs)
}

/// The most bytes an event's body may have: receivers (and their proxies) take this much.
pub const MAX_EVENT_BYTES: usize = 20_000;

/// `{"type", "timestamp", "data"}`, under [`MAX_EVENT_BYTES`]: data that would not fit is
/// replaced by its `id` and `"truncated": true`, for the receiver to fetch the rest.
fn event_body(event_type: &str, data: &serde_json::Value) -> String {
    let body = |data: &serde_json::Value| {
        json!({
            "type": event_type,
            "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string()
    };
    let full = body(data);
    if full.len() <= MAX_EVENT_BYTES {
        return full;
    }
    tracing::warn!(
        event_type,
        bytes = full.len(),
        "event data over 20 KB sent truncated"
    );
    body(&json!({ "id": data.get("id"), "truncated": true }))
}

/// A delivery as the log shows it (the body is left out of lists).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    /// Its `webhook-id`.
    pub message_id: String,
    pub endpoint_id: Uuid,
    pub event_type: String,
    /// `pending` (not yet answered, or retrying), `succeeded` or `failed` (for good).
    pub status: String,
    pub attempts: i32,
    /// The last attempt's status code; absent when no answer came.
    pub response_status: Option<i32>,
    /// The first 1 KB of the last answer.
    pub response_body: Option<String>,
    /// How long the last attempt took, in milliseconds.
    pub latency_ms: Option<i32>,
    pub last_error: Option<String>,
    /// When the next attempt is due, while one is.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The delivery to send: its row and endpoint.
pub struct Outgoing {
    pub delivery_id: Uuid,
    pub body: String,
    pub status: String,
    pub endpoint: Endpoint,
}

/// A delivery with its endpoint, for the worker; `None` when either is gone.
pub async fn outgoing(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Outgoing>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT d.id, d.body, d.status,
                e.id AS endpoint_id, e.tenant, e.url, e.events, e.description, e.enabled,
                e.admin, e.secret, e.previous_secret, e.previous_secret_until,
                e.disabled_reason, e.failing_since, e.created_at, e.updated_at
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
         WHERE d.id = $1",
        id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Outgoing {
        delivery_id: r.id,
        body: r.body,
        status: r.status,
        endpoint: Endpoint {
            id: r.endpoint_id,
            tenant: r.tenant,
            url: r.url,
            events: r.events,
            description: r.description,
            enabled: r.enabled,
            admin: r.admin,
            secret: r.secret,
            previous_secret: r.previous_secret,
            previous_secret_until: r.previous_secret_until,
            disabled_reason: r.disabled_reason,
            failing_since: r.failing_since,
            created_at: r.created_at,
            updated_at: r.updated_at,
        },
    }))
}

/// What one attempt brought, for the log.
pub struct AttemptRecord<'a> {
    pub attempt: i32,
    /// `pending` (a retry is due at `next_attempt_at`), `succeeded` or `failed`.
    pub status: &'a str,
    pub response_status: Option<i32>,
    pub response_body: &'a str,
    pub latency_ms: i32,
    pub error: Option<&'a str>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Writes an attempt's outcome into the delivery's log.
pub async fn record_attempt(
    db: impl PgExecutor<'_>,
    id: Uuid,
    record: &AttemptRecord<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_deliveries
         SET status = $2, attempts = $3, response_status = $4, response_body = $5,
             latency_ms = $6, last_error = $7, next_attempt_at = $8, updated_at = now()
         -- A late copy of an older attempt never overwrites a newer outcome.
         WHERE id = $1 AND attempts <= $3 AND status <> 'succeeded'",
        id,
        record.status,
        record.attempt,
        record.response_status,
        record.response_body,
        record.latency_ms,
        record.error,
        record.next_attempt_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a delivery failed for good, keeping the last attempt's own error if it recorded one.
pub async fn mark_failed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE webhook_deliveries
         SET status = 'failed', last_error = coalesce(last_error, $2), next_attempt_at = NULL,
             updated_at = now()
         WHERE id = $1",
        id,
        error,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// An endpoint's deliveries, newest first; after `before` (a delivery's id: ids are UUIDv7,
/// in creation order, and unlike times never shared) when given.
pub async fn list_deliveries(
    db: impl PgExecutor<'_>,
    endpoint_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as!(
        Delivery,
        r#"SELECT id, 'msg_' || replace(id::text, '-', '') AS "message_id!", endpoint_id,
                  event_type, status, attempts, response_status, response_body, latency_ms,
                  last_error, next_attempt_at, created_at, updated_at
           FROM webhook_deliveries
           WHERE endpoint_id = $1 AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC
           LIMIT $3"#,
        endpoint_id,
        before,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Sends a failed delivery again: its job gets a fresh set of attempts (the same
/// `webhook-id`). Returns the job to publish, or `None` unless the delivery (of this endpoint)
/// has failed for good.
pub async fn replay(
    conn: &mut PgConnection,
    endpoint_id: Uuid,
    id: Uuid,
) -> Result<Option<Job>, sqlx::Error> {
    let reopened = sqlx::query!(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
                                       attempts = 0, updated_at = now()
         WHERE id = $1 AND endpoint_id = $2 AND status = 'failed'
           AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = $1 AND jobs.is_dead)",
        id,
        endpoint_id,
    )
    .execute(&mut *conn)
    .await?;
    if reopened.rows_affected() == 0 {
        return Ok(None);
    }
    super::jobs::revive(&mut *conn, id).await
}

/// [`replay`] for up to `limit` of an endpoint's failed deliveries made since `since`, oldest
/// first; returns the jobs to publish.
pub async fn replay_failed_since(
    conn: &mut PgConnection,
    endpoint_id: Uuid,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    let ids = sqlx::query_scalar!(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
                                       attempts = 0, updated_at = now()
         WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN jobs j ON j.id = d.id
                      WHERE d.endpoint_id = $1 AND d.status = 'failed' AND d.created_at >= $2
                        AND j.is_dead
                      ORDER BY d.created_at LIMIT $3
                      FOR UPDATE OF d SKIP LOCKED)
         RETURNING id",
        endpoint_id,
        since,
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(job) = super::jobs::revive(&mut *conn, id).await? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

/// Deliveries per endpoint over the last day, for the list and the dashboard: how many, and
/// how many succeeded.
pub async fn success_counts(
    db: impl PgExecutor<'_>,
    endpoint_ids: &[Uuid],
) -> Result<Vec<(Uuid, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT endpoint_id, count(*) AS "finished!",
                  count(*) FILTER (WHERE status = 'succeeded') AS "succeeded!"
           FROM webhook_deliveries
           WHERE endpoint_id = ANY($1) AND status <> 'pending'
             AND created_at > now() - interval '1 day'
           GROUP BY endpoint_id"#,
        endpoint_ids,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.endpoint_id, r.finished, r.succeeded))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_body_stays_under_20_kb() {
        let small = event_body("media.ready", &json!({"id": "m1"}));
        let parsed: serde_json::Value = serde_json::from_str(&small).expect("json");
        assert_eq!(parsed["data"]["id"], "m1");
        assert_eq!(parsed["type"], "media.ready");
        let huge = json!({"id": "m2", "error": "x".repeat(30_000)});
        let cut = event_body("job.dead", &huge);
        assert!(cut.len() <= MAX_EVENT_BYTES);
        let parsed: serde_json::Value = serde_json::from_str(&cut).expect("json");
        assert_eq!(parsed["data"], json!({"id": "m2", "truncated": true}));
    }
}
