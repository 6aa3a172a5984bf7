//! Retention at the rows: which finished jobs a prune deletes, which it must keep, and what a
//! sent email keeps of its payload.

use std::time::Duration;

use kiln_core::{
    db::{self, jobs::NewJob, retention},
    jobs::JobKind,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{database, insert, starter};

/// Runs a job to `outcome` (`succeeded` or `dead`) and moves its finish `ago` into the past.
async fn finished(pool: &PgPool, id: Uuid, outcome: &str, ago: &str) {
    db::jobs::start_attempt(pool, id, &starter())
        .await
        .expect("start");
    let done = match outcome {
        "succeeded" => db::jobs::mark_succeeded(pool, id, 1).await,
        _ => db::jobs::mark_dead(pool, id, 1, "smtp 550").await,
    };
    assert!(done.expect("finish"));
    let backdated = sqlx::query("UPDATE jobs SET finished_at = now() - $2::interval WHERE id = $1")
        .bind(id)
        .bind(ago)
        .execute(pool)
        .await
        .expect("backdate");
    assert_eq!(backdated.rows_affected(), 1);
}

async fn exists(pool: &PgPool, id: Uuid) -> bool {
    db::jobs::find(pool, id).await.expect("find").is_some()
}

#[tokio::test]
async fn old_finished_jobs_go_and_recent_or_still_keyed_ones_stay() {
    let (_services, pool) = database().await;
    let hour = Duration::from_secs(3600);
    let old = insert(&pool, JobKind::Noop).await.id;
    finished(&pool, old, "succeeded", "2 hours").await;
    let recent = insert(&pool, JobKind::Noop).await.id;
    finished(&pool, recent, "succeeded", "10 minutes").await;
    let old_dead = insert(&pool, JobKind::Noop).await.id;
    finished(&pool, old_dead, "dead", "2 hours").await;
    let queued = insert(&pool, JobKind::Noop).await.id;
    let keyed = |key: &'static str| {
        let pool = pool.clone();
        async move {
            let job = NewJob {
                id: Uuid::now_v7(),
                tenant: None,
                kind: JobKind::Cleanup,
                payload: serde_json::json!({}),
                max_attempts: 1,
                traceparent: None,
            };
            let inserted = db::jobs::insert_deduplicated(&pool, &job, key).await;
            inserted.expect("insert").expect("new key").id
        }
    };
    // A cron tick a scheduler could still fire, and one long past.
    let tick_recent = keyed("hourly@2026-12-01T10:00:00Z").await;
    finished(&pool, tick_recent, "succeeded", "2 hours").await;
    let tick_old = keyed("hourly@2026-11-01T10:00:00Z").await;
    finished(&pool, tick_old, "succeeded", "30 days").await;

    let pruned = retention::prune_finished(&pool, "succeeded", hour, 100)
        .await
        .expect("prune");

    assert_eq!(pruned, 2);
    assert!(!exists(&pool, old).await && !exists(&pool, tick_old).await);
    for (id, why) in [
        (recent, "finished within the retention"),
        (old_dead, "dead jobs have a retention of their own"),
        (queued, "live"),
        (tick_recent, "its key may still be met"),
    ] {
        assert!(exists(&pool, id).await, "{why}");
    }
    let dead = retention::prune_finished(&pool, "dead", hour, 100)
        .await
        .expect("prune");
    assert_eq!(dead, 1);
    assert!(!exists(&pool, old_dead).await);

    // Bounded batches: a limit of one deletes one.
    let more: Vec<Uuid> = futures::future::join_all((0..3).map(|_| insert(&pool, JobKind::Noop)))
        .await
        .into_iter()
        .map(|j| j.id)
        .collect();
    for id in &more {
        finished(&pool, *id, "succeeded", "3 hours").await;
    }
    assert_eq!(
        retention::prune_finished(&pool, "succeeded", hour, 1)
            .await
            .expect("prune"),
        1
    );
}

#[tokio::test]
async fn a_sent_email_keeps_no_recipients_subject_or_body() {
    let (_services, pool) = database().await;
    let job = db::jobs::insert(
        &pool,
        &NewJob {
            id: Uuid::now_v7(),
            tenant: Some("tenant-a"),
            kind: JobKind::Email,
            payload: serde_json::json!({
                "to": ["ann@example.com"], "cc": ["bob@example.com"], "bcc": [],
                "subject": "Your results", "text": "private", "html": "<p>private</p>"
            }),
            max_attempts: 3,
            traceparent: None,
        },
    )
    .await
    .expect("insert");
    // Not sent yet: nothing is removed.
    retention::scrub_sent_email(&pool, job.id)
        .await
        .expect("scrub");
    let queued = db::jobs::find(&pool, job.id)
        .await
        .expect("find")
        .expect("row");
    assert_eq!(queued.payload["text"], "private");

    finished(&pool, job.id, "succeeded", "1 second").await;
    retention::scrub_sent_email(&pool, job.id)
        .await
        .expect("scrub");

    let sent = db::jobs::find(&pool, job.id)
        .await
        .expect("find")
        .expect("row");
    assert_eq!(
        sent.payload,
        serde_json::json!({"recipients": 2, "personal_data_removed": true})
    );
}
