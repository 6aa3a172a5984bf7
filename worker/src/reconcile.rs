//! Messages the broker dead-lettered by itself, reconciled with their rows.
//!
//! A work queue hands a message out at most `KILN_DELIVERY_LIMIT` times; one returned more often
//! (every worker holding it crashed, or lost its connection) is dead-lettered by the broker to
//! `<ns>.reconcile` instead of being requeued, and Kiln's own fallback rejections land there
//! too. Each message is settled against its job's row:
//!
//! - a live job (queued, failed, or running on no live worker) is buried as `dead` with the
//!   broker's reason, as the worker would have, its media failed and its notification sent;
//! - a dead job's message, or one for no job, goes on to `<ns>.dead`, where every dead job's
//!   message rests;
//! - a succeeded job's message, or a duplicate of one a live worker holds, is dropped.
//!
//! A running job is buried only after its row has read "not held" through one heartbeat
//! time-out of reads that all reached Postgres: a worker killed a moment ago still looks alive
//! until its heartbeat lapses, and a database outage makes every heartbeat look old.

use std::time::{Duration, Instant};

use kiln_core::{
    db::{self, jobs::Job},
    jobs::{Envelope, JobKind, JobStatus},
};
use lapin::{
    message::Delivery,
    types::{AMQPValue, FieldTable},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Context,
    runner::{self, Burial, Settle},
};

/// Deliveries of the reconcile queue a worker holds at once: the queue is quiet unless
/// something is badly wrong, and a running job's message waits a heartbeat time-out here.
pub const PREFETCH: u16 = 16;

/// Settles one dead-lettered message.
pub async fn handle(ctx: &Context, delivery: &Delivery, shutdown: &CancellationToken) -> Settle {
    let death = Death::of(delivery);
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&delivery.data) else {
        let reason = format!("undecodable job message, {}", death.describe());
        return runner::to_dead_queue(ctx, &delivery.data, delivery.routing_key.as_str(), &reason)
            .await;
    };
    let span = tracing::info_span!(
        "reconcile",
        job.id = %envelope.id,
        job.kind = envelope.kind.as_str(),
        reason = death.reason,
    );
    reconcile(ctx, delivery, &envelope, &death, shutdown)
        .instrument(span)
        .await
}

async fn reconcile(
    ctx: &Context,
    delivery: &Delivery,
    envelope: &Envelope,
    death: &Death,
    shutdown: &CancellationToken,
) -> Settle {
    let timeout = ctx.config.heartbeat_timeout;
    // Since when every read of the running job reached Postgres: reset by a failed read.
    let mut reachable_since: Option<Instant> = None;
    loop {
        let read = db::jobs::find(&ctx.db, envelope.id).await;
        let job = match read {
            Ok(job) => job,
            Err(error) if !db::is_unavailable(&error) => {
                tracing::error!(%error, "cannot read the dead-lettered job; requeueing");
                pause(Duration::from_secs(1), shutdown).await;
                return Settle::Requeue;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the dead-lettered job yet");
                reachable_since = None;
                if pause(Duration::from_secs(1), shutdown).await {
                    return Settle::Requeue;
                }
                continue;
            }
        };
        let Some(job) = job else {
            let reason = format!("no such job, {}", death.describe());
            return runner::to_dead_queue(ctx, &delivery.data, envelope.kind.as_str(), &reason)
                .await;
        };
        match job.status.parse::<JobStatus>().ok() {
            Some(JobStatus::Succeeded) => {
                tracing::info!("dead-lettered message of a succeeded job dropped");
                count(envelope.kind, death, "dropped");
                return Settle::Ack;
            }
            Some(JobStatus::Dead) => {
                let reason = job.last_error.clone().unwrap_or_else(|| death.describe());
                count(envelope.kind, death, "forwarded");
                return runner::to_dead_queue(ctx, &delivery.data, envelope.kind.as_str(), &reason)
                    .await;
            }
            Some(JobStatus::Running) => {
                let since = *reachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() < timeout {
                    if pause(crate::heartbeat::interval(timeout), shutdown).await {
                        return Settle::Requeue;
                    }
                    continue;
                }
            }
            _ => {}
        }
        return bury(ctx, &job, envelope.kind, death, shutdown).await;
    }
}

async fn bury(
    ctx: &Context,
    job: &Job,
    kind: JobKind,
    death: &Death,
    shutdown: &CancellationToken,
) -> Settle {
    let error = match &job.last_error {
        Some(last) => format!("{}; last error: {last}", death.describe()),
        None => death.describe(),
    };
    let (settle, buried) =
        runner::bury_as(ctx, kind, job, &error, shutdown, Burial::DeadLettered).await;
    // Not buried: a newer attempt started, or a live worker holds the job; the message was
    // a duplicate and is dropped.
    count(kind, death, if buried { "buried" } else { "dropped" });
    settle
}

fn count(kind: JobKind, death: &Death, outcome: &'static str) {
    metrics::counter!(
        "kiln_broker_dead_letters_total",
        "kind" => kind.as_str(),
        "reason" => death.reason.clone(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// `true` if shutdown came first.
async fn pause(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// Why and where the broker dead-lettered a message, from its `x-death` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// `delivery_limit`, `rejected`, `expired` or `maxlen`; `unknown` without the header.
    pub reason: String,
    pub queue: Option<String>,
    /// `x-delivery-count`: how often the queue had handed the message out.
    pub deliveries: Option<i64>,
}

impl Death {
    /// Reads the newest `x-death` entry (the broker puts it first).
    pub fn of(delivery: &Delivery) -> Self {
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        Self::from_headers(&headers)
    }

    fn from_headers(headers: &FieldTable) -> Self {
        let inner = headers.inner();
        let newest = inner.get("x-death").and_then(|deaths| match deaths {
            AMQPValue::FieldArray(deaths) => deaths.as_slice().first().and_then(|d| match d {
                AMQPValue::FieldTable(table) => Some(table.clone()),
                _ => None,
            }),
            _ => None,
        });
        let text = |table: &FieldTable, key: &str| {
            table.inner().get(key).and_then(|value| match value {
                AMQPValue::LongString(s) => Some(s.to_string()),
                AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
                _ => None,
            })
        };
        let (reason, queue) = match &newest {
            Some(table) => (text(table, "reason"), text(table, "queue")),
            None => (
                text(headers, "x-first-death-reason"),
                text(headers, "x-first-death-queue"),
            ),
        };
        let deliveries = inner.get("x-delivery-count").and_then(integer);
        Self {
            reason: reason.unwrap_or_else(|| "unknown".to_owned()),
            queue,
            deliveries,
        }
    }

    /// The job's `last_error` text.
    pub fn describe(&self) -> String {
        let mut text = format!("dead-lettered by the broker ({}", self.reason);
        if let Some(queue) = &self.queue {
            text.push_str(&format!(" in {queue}"));
        }
        if let Some(deliveries) = self.deliveries {
            text.push_str(&format!(", delivered {deliveries} times"));
        }
        text.push(')');
        text
    }
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldArray, LongString};

    use super::*;

    #[test]
    fn reads_the_newest_death() {
        let mut death = FieldTable::default();
        death.insert(
            "reason".into(),
            AMQPValue::LongString(LongString::from("delivery_limit")),
        );
        death.insert(
            "queue".into(),
            AMQPValue::LongString(LongString::from("kiln.media.dl20")),
        );
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        headers.insert("x-delivery-count".into(), AMQPValue::LongInt(21));
        let read = Death::from_headers(&headers);
        assert_eq!(read.reason, "delivery_limit");
        assert_eq!(
            read.describe(),
            "dead-lettered by the broker (delivery_limit in kiln.media.dl20, delivered 21 times)"
        );
    }

    #[test]
    fn without_headers_the_reason_is_unknown() {
        let read = Death::from_headers(&FieldTable::default());
        assert_eq!(read.describe(), "dead-lettered by the broker (unknown)");
    }
}
