//! The batched job writes against a real Postgres: each request gets its own row's answer, with
//! the same conditions as the single-row writes, however many share a round.

use kiln_core::{
    db::{self, job_writes::JobWrites, jobs::NewJob},
    jobs::JobKind,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{database, insert, register, starter};

async fn row(pool: &PgPool, id: Uuid) -> (String, i32, bool) {
    let job = db::jobs::find(pool, id).await.expect("find").expect("row");
    (job.status, job.attempts, job.published_at.is_some())
}

/// Whether the job's `published_at` gets written within a generous deadline (deferred writes
/// land about a second after they are asked for).
async fn published_eventually(pool: &PgPool, id: Uuid) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if row(pool, id).await.2 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn many_concurrent_jobs_each_get_their_own_answer() {
    let (_services, pool) = database().await;
    let writes = JobWrites::spawn(pool.clone());
    // 300 inserts at once share rounds; each caller gets its own committed row back.
    let inserts = (0..300).map(|n| {
        let writes = writes.clone();
        async move {
            let new = NewJob {
                id: Uuid::now_v7(),
                tenant: Some("tenant-a"),
                kind: JobKind::Noop,
                payload: serde_json::json!({ "n": n }),
                max_attempts: 3,
                traceparent: None,
            };
            let job = writes.insert(&new).await.expect("insert");
            assert_eq!((job.id, job.payload["n"].as_i64()), (new.id, Some(n)));
            assert_eq!((job.status.as_str(), job.attempts), ("queued", 0));
            job
        }
    });
    let jobs = futures::future::join_all(inserts).await;
    // Their other writes at once too: every one lands on its own row.
    let runs = jobs.iter().map(|job| {
        let writes = writes.clone();
        let id = job.id;
        async move {
            writes.record_published(id).await;
            let started = writes
                .start_attempt(id, &starter())
                .await
                .expect("start")
                .expect("startable");
            assert_eq!((started.id, started.attempts), (id, 1));
            assert!(writes.mark_succeeded(id, 1).await.expect("succeed"));
        }
    });
    futures::future::join_all(runs).await;
    for job in &jobs {
        assert_eq!(row(&pool, job.id).await, ("succeeded".into(), 1, true));
    }
}

#[tokio::test]
async fn the_single_row_conditions_still_hold() {
    let (_services, pool) = database().await;
    let writes = JobWrites::spawn(pool.clone());
    let job = insert(&pool, JobKind::Noop).await;

    // Two messages of one job at once never share an attempt: the second waits for the next
    // round, and then finds the job held by the worker that started it.
    let worker = register(&pool, std::time::Duration::from_secs(30)).await;
    let (a, b) = tokio::join!(
        writes.start_attempt(job.id, &worker),
        writes.start_attempt(job.id, &worker)
    );
    let (a, b) = (a.expect("write"), b.expect("write"));
    assert_eq!(
        a.iter().chain(&b).map(|j| j.attempts).collect::<Vec<_>>(),
        [1]
    );
    // Once that worker is gone, a message starts the next attempt.
    db::workers::stop(&pool, worker.worker).await.expect("stop");
    let next = writes
        .start_attempt(job.id, &starter())
        .await
        .expect("write");
    assert_eq!(next.expect("abandoned").attempts, 2);

    // Only the current attempt may record the outcome, even when the superseded one reports in
    // the same round: each caller hears about its own attempt.
    let (stale, current) = tokio::join!(
        writes.mark_succeeded(job.id, 1),
        writes.mark_succeeded(job.id, 2)
    );
    assert!(!stale.expect("write"));
    assert!(current.expect("write"));
    // A finished job cannot start again (a duplicate message changes nothing).
    assert!(
        writes
            .start_attempt(job.id, &starter())
            .await
            .expect("write")
            .is_none()
    );
    // Unknown jobs: nothing to start, nothing to record.
    assert!(
        writes
            .start_attempt(Uuid::now_v7(), &starter())
            .await
            .expect("write")
            .is_none()
    );
    assert!(
        !writes
            .mark_succeeded(Uuid::now_v7(), 1)
            .await
            .expect("write")
    );
    // Its outcome recorded the publish the producer never did: a started job was published.
    assert_eq!(row(&pool, job.id).await, ("succeeded".into(), 2, true));
}

#[tokio::test]
async fn publish_records_are_deferred_and_never_lost_on_a_clean_exit() {
    let (_services, pool) = database().await;
    let writes = JobWrites::spawn(pool.clone());
    let waiting = insert(&pool, JobKind::Noop).await;
    let started = insert(&pool, JobKind::Noop).await;
    writes
        .start_attempt(started.id, &starter())
        .await
        .expect("start");

    writes.record_published(waiting.id).await;
    writes.record_published(started.id).await;
    writes.flush_published().await;
    assert_eq!(row(&pool, waiting.id).await, ("queued".into(), 0, true));
    // A started job needs no record (the relay leaves it alone), and writing one would cost
    // the start its HOT update; the attempt's outcome records it.
    assert_eq!(row(&pool, started.id).await, ("running".into(), 1, false));
    assert!(writes.mark_succeeded(started.id, 1).await.expect("succeed"));
    assert_eq!(row(&pool, started.id).await, ("succeeded".into(), 1, true));

    // Records still pending when the last handle goes are written then.
    let last = insert(&pool, JobKind::Noop).await;
    writes.record_published(last.id).await;
    drop(writes);
    assert!(
        published_eventually(&pool, last.id).await,
        "record never written"
    );
}

#[tokio::test]
async fn a_failed_round_reports_the_error_to_each_caller() {
    let (_services, pool) = database().await;
    let writes = JobWrites::spawn(pool.clone());
    let job = insert(&pool, JobKind::Noop).await;
    pool.close().await;
    let error = writes
        .start_attempt(job.id, &starter())
        .await
        .expect_err("pool closed");
    assert!(!error.to_string().is_empty());
}

#[tokio::test]
async fn a_publish_record_that_fails_to_write_is_retried() {
    let (services, pool) = database().await;
    let job = insert(&pool, JobKind::Noop).await;
    // A role that may read jobs but not yet update them: its writes fail until the grant.
    let role = format!("{}_writer", services.name);
    for statement in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT SELECT ON jobs TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .expect("role");
    }
    let url = services
        .database_url
        .replacen("postgres@", &format!("{role}@"), 1);
    let limited = PgPool::connect(&url).await.expect("connect as the role");
    let writes = JobWrites::spawn(limited.clone());

    writes.record_published(job.id).await;
    writes.flush_published().await;
    assert!(!row(&pool, job.id).await.2, "the write was refused");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT UPDATE ON jobs TO {role}"
    )))
    .execute(&pool)
    .await
    .expect("grant");
    // Retried a moment later, without anyone asking.
    let written = published_eventually(&pool, job.id).await;

    drop(writes);
    limited.close().await;
    for statement in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .expect("cleanup");
    }
    assert!(
        written,
        "the record was written once the write could succeed"
    );
}

#[tokio::test]
async fn a_row_postgres_refuses_fails_only_its_own_request_in_a_shared_round() {
    let (_services, pool) = database().await;
    let writes = JobWrites::spawn(pool.clone());
    // jsonb cannot store a NUL: those rows' statement fails, and their round with it.
    let inserts = (0..50).map(|n| {
        let writes = writes.clone();
        async move {
            let text = if n % 10 == 3 { "bad\u{0}" } else { "fine" };
            let new = NewJob {
                id: Uuid::now_v7(),
                tenant: Some("tenant-a"),
                kind: JobKind::Email,
                payload: serde_json::json!({ "n": n, "text": text }),
                max_attempts: 3,
                traceparent: None,
            };
            (n, writes.insert(&new).await)
        }
    });
    let answers = futures::future::join_all(inserts).await;
    for (n, answer) in &answers {
        match answer {
            Ok(job) => {
                assert_ne!(n % 10, 3, "the row with a NUL was stored");
                assert_eq!(job.payload["n"], *n);
            }
            Err(error) => assert_eq!(n % 10, 3, "a good row failed: {error}"),
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(stored, 45);
}
