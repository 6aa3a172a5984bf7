//! The `jobs` table's shape: what each status write changes, and how each status is found
//! without an index on `status` (see the `hot_job_updates` migration).

use kiln_core::{
    db::{
        self,
        job_writes::JobWrites,
        jobs::{Job, JobFilter},
    },
    jobs::JobKind,
};
use std::collections::BTreeSet;

use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{database, insert, register, starter};

/// A failed attempt's retry is due this long after it.
const RETRY_IN: std::time::Duration = std::time::Duration::from_secs(5);

async fn start(pool: &PgPool, id: Uuid) -> Job {
    let started = db::jobs::start_attempt(pool, id, &starter())
        .await
        .expect("start");
    started.expect("startable")
}

async fn fail(pool: &PgPool, id: Uuid, attempt: i32) {
    let current = db::jobs::mark_failed(pool, id, attempt, "smtp 451", RETRY_IN).await;
    assert!(
        current.expect("fail"),
        "attempt {attempt} of {id} superseded"
    );
}

/// Every column of `jobs` that some index reads: its key columns and each column its expression
/// or predicate uses. Postgres records both in `pg_depend`, and its HOT check (Postgres' own
/// "HOT-blocking" attribute set) is the same set, stored generated columns included.
async fn indexed_columns(pool: &PgPool) -> BTreeSet<String> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT a.attname::text
         FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum > 0
         WHERE i.indrelid = 'jobs'::regclass
           AND (a.attnum = ANY (i.indkey::int2[])
                OR EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                             AND d.refclassid = 'pg_class'::regclass
                             AND d.refobjid = i.indrelid AND d.refobjsubid = a.attnum))",
    )
    .fetch_all(pool)
    .await
    .expect("index columns");
    names.into_iter().collect()
}

/// The job's row, every column (generated ones too) by name.
async fn snapshot(pool: &PgPool, id: Uuid) -> serde_json::Map<String, serde_json::Value> {
    let row: serde_json::Value =
        sqlx::query_scalar("SELECT to_jsonb(jobs) FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("row");
    match row {
        serde_json::Value::Object(columns) => columns,
        other => panic!("not a row: {other}"),
    }
}

/// The columns whose value differs between two snapshots of one row. Writing a column's old
/// value again (`finished_at` from NULL to NULL) changes nothing, for Postgres' HOT check too.
fn changed(
    before: &serde_json::Map<String, serde_json::Value>,
    after: &serde_json::Map<String, serde_json::Value>,
) -> BTreeSet<String> {
    after
        .iter()
        .filter(|(column, value)| before.get(*column) != Some(*value))
        .map(|(column, _)| column.clone())
        .collect()
}

/// The rule that keeps the hot path's writes HOT (see the `hot_job_updates` migration): no
/// index may read a column whose value starting an attempt or recording a failed one changes.
/// A new column those writes touch (a worker id, a retry due time, progress) stays unindexed,
/// or it is listed here with its reason. The one exception today: the first outcome of a job
/// whose producer's publish record has not landed yet writes `published_at`, which takes the
/// row out of the relay's partial index (see `db::published_later`); that write is rare and
/// must not be HOT.
#[tokio::test]
async fn no_index_reads_a_column_that_starting_or_failing_an_attempt_changes() {
    let (_services, pool) = database().await;
    let indexed = indexed_columns(&pool).await;
    // The catalog query sees key columns, predicates and generated columns alike.
    for column in [
        "id",
        "dedupe_key",
        "published_at",
        "finished_at",
        "is_live",
        "is_dead",
    ] {
        assert!(
            indexed.contains(column),
            "{column} missing from {indexed:?}"
        );
    }
    let writes = JobWrites::spawn(pool.clone());
    let job = insert(&pool, JobKind::Noop).await;
    let unbatched = insert(&pool, JobKind::Noop).await;
    let crashing = register(&pool, std::time::Duration::from_secs(30)).await;

    let mut steps: Vec<(&str, BTreeSet<String>)> = Vec::new();
    let mut before = snapshot(&pool, job.id).await;
    let mut step = |name, after: serde_json::Map<_, _>, before: &mut serde_json::Map<_, _>| {
        steps.push((name, changed(before, &after)));
        *before = after;
    };
    let first = writes
        .start_attempt(job.id, &crashing)
        .await
        .expect("start");
    assert_eq!(first.expect("startable").attempts, 1);
    step(
        "batched start of a queued job",
        snapshot(&pool, job.id).await,
        &mut before,
    );
    fail(&pool, job.id, 1).await;
    step("first failure", snapshot(&pool, job.id).await, &mut before);
    let second = writes
        .start_attempt(job.id, &crashing)
        .await
        .expect("restart");
    assert_eq!(second.expect("startable").attempts, 2);
    step(
        "batched start of a failed job",
        snapshot(&pool, job.id).await,
        &mut before,
    );
    // A worker that died mid-job (stopped, here): the next message starts the next attempt.
    db::workers::stop(&pool, crashing.worker)
        .await
        .expect("stop");
    let third = writes
        .start_attempt(job.id, &starter())
        .await
        .expect("take over");
    assert_eq!(third.expect("startable").attempts, 3);
    step(
        "batched start of a running job",
        snapshot(&pool, job.id).await,
        &mut before,
    );
    fail(&pool, job.id, 3).await;
    step("later failure", snapshot(&pool, job.id).await, &mut before);

    // The producer's publish record came first, as it usually does.
    db::jobs::mark_published(&pool, unbatched.id)
        .await
        .expect("record the publish");
    let mut before = snapshot(&pool, unbatched.id).await;
    start(&pool, unbatched.id).await;
    step(
        "start of a queued job",
        snapshot(&pool, unbatched.id).await,
        &mut before,
    );
    fail(&pool, unbatched.id, 1).await;
    step(
        "failure after the publish record",
        snapshot(&pool, unbatched.id).await,
        &mut before,
    );

    for (name, changes) in &steps {
        // Each write changed something, so the comparison sees the write at all.
        assert!(
            changes.contains("status") || changes.contains("attempts"),
            "{name}: {changes:?}"
        );
        let blocking: BTreeSet<_> = changes.intersection(&indexed).cloned().collect();
        let allowed: BTreeSet<String> = match *name {
            "first failure" => ["published_at".to_owned()].into(),
            _ => BTreeSet::new(),
        };
        assert_eq!(
            blocking, allowed,
            "{name} changed indexed columns {blocking:?}"
        );
    }
}

/// The catalog rule above is what Postgres needs; this checks that it is what Postgres does.
/// A HOT update also needs room on the row's page, so the table is vacuumed first (and its
/// fillfactor leaves room); only that some start was HOT is asserted, never a share.
#[tokio::test]
async fn a_start_on_a_freshly_vacuumed_table_is_a_hot_update() {
    let (services, pool) = database().await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(insert(&pool, JobKind::Noop).await.id);
    }
    sqlx::query("VACUUM jobs")
        .execute(&pool)
        .await
        .expect("vacuum");
    for &id in &ids {
        start(&pool, id).await;
    }
    pool.close().await;

    // Statistics reach the view when a backend flushes them; every backend that wrote has
    // exited by now, so they arrive within the deadline.
    let pool = services.db().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let (updates, hot) = loop {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobs'",
        )
        .fetch_one(&pool)
        .await
        .expect("table statistics");
        if counts.0 >= ids.len() as i64 || tokio::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(updates, ids.len() as i64);
    assert!(hot >= 1, "none of {updates} starts was HOT");
}

#[tokio::test]
async fn each_status_is_listed_counted_and_revived_through_its_own_index() {
    let (_services, pool) = database().await;
    let queued = insert(&pool, JobKind::Noop).await;
    let running = insert(&pool, JobKind::Noop).await;
    start(&pool, running.id).await;
    let retrying = insert(&pool, JobKind::Email).await;
    start(&pool, retrying.id).await;
    fail(&pool, retrying.id, 1).await;
    let succeeded = insert(&pool, JobKind::Noop).await;
    start(&pool, succeeded.id).await;
    let current = db::jobs::mark_succeeded(&pool, succeeded.id, 1).await;
    assert!(current.expect("succeed"));
    let dead = insert(&pool, JobKind::Email).await;
    start(&pool, dead.id).await;
    let current = db::jobs::mark_dead(&pool, dead.id, 1, "smtp 550").await;
    assert!(current.expect("bury"));

    let listed = |status: Option<&str>, kind: Option<&str>| {
        let filter = JobFilter {
            status: status.map(str::to_owned),
            kind: kind.map(str::to_owned),
        };
        let pool = pool.clone();
        async move {
            let jobs = db::jobs::list(&pool, &filter, 50, false)
                .await
                .expect("list");
            jobs.into_iter().map(|j| j.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(Some("queued"), None).await, [queued.id]);
    assert_eq!(listed(Some("running"), None).await, [running.id]);
    assert_eq!(listed(Some("failed"), None).await, [retrying.id]);
    assert_eq!(listed(Some("succeeded"), None).await, [succeeded.id]);
    assert_eq!(listed(Some("dead"), None).await, [dead.id]);
    assert_eq!(listed(Some("dead"), Some("noop")).await, Vec::<Uuid>::new());
    // Newest first.
    let everything = [dead.id, succeeded.id, retrying.id, running.id, queued.id];
    assert_eq!(listed(None, None).await, everything);
    assert_eq!(listed(None, Some("email")).await, [dead.id, retrying.id]);

    // A failed attempt is not the end of the job; success and death are.
    let finished = |id| {
        let pool = pool.clone();
        async move {
            let job = db::jobs::find(&pool, id).await.expect("find").expect("row");
            job.finished_at.is_some()
        }
    };
    assert!(!finished(retrying.id).await);
    assert!(finished(succeeded.id).await);
    assert!(finished(dead.id).await);

    let failures: Vec<Uuid> = db::jobs::recent_failures(&pool, 10)
        .await
        .expect("failures")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(failures.len(), 2);
    assert!(failures.contains(&retrying.id) && failures.contains(&dead.id));
    let dead_by_kind = db::stats::dead_by_kind(&pool).await.expect("dead by kind");
    assert_eq!(dead_by_kind, [("email".to_owned(), 1)]);

    // A started job's outcome records its publish; the deferred record has nothing left to do.
    for id in [retrying.id, succeeded.id, dead.id] {
        let job = db::jobs::find(&pool, id).await.expect("find").expect("row");
        assert!(job.published_at.is_some(), "{id} has no publish record");
    }

    let revived = db::jobs::revive(&pool, dead.id).await.expect("revive");
    let revived = revived.expect("was dead");
    assert_eq!(revived.status, "queued");
    assert_eq!(revived.finished_at, None);
    assert_eq!(listed(Some("dead"), None).await, Vec::<Uuid>::new());
    assert_eq!(listed(Some("queued"), None).await, [dead.id, queued.id]);
    let dead_by_kind = db::stats::dead_by_kind(&pool).await.expect("dead by kind");
    assert!(dead_by_kind.is_empty(), "{dead_by_kind:?}");
}
