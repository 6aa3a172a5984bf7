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
use kiln_tests::Services;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{database, insert};

async fn start(pool: &PgPool, id: Uuid) -> Job {
    let started = db::jobs::start_attempt(pool, id).await.expect("start");
    started.expect("startable")
}

async fn fail(pool: &PgPool, id: Uuid, attempt: i32) {
    let current = db::jobs::mark_failed(pool, id, attempt, "smtp 451").await;
    assert!(
        current.expect("fail"),
        "attempt {attempt} of {id} superseded"
    );
}

/// Row updates of `jobs` in this database so far, and how many of them were HOT. Statistics
/// reach the views when a backend flushes them; every backend that wrote has exited by now.
async fn update_counts(services: &Services, at_least: i64) -> (i64, i64) {
    let pool = services.db().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobs'",
        )
        .fetch_one(&pool)
        .await
        .expect("table statistics");
        if counts.0 >= at_least || tokio::time::Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn starting_an_attempt_changes_no_indexed_column() {
    let (services, pool) = database().await;
    let writes = JobWrites::spawn(pool.clone());
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(insert(&pool, JobKind::Noop).await.id);
    }
    // The writes attempts make: start (batched, as workers do), fail, start again, fail again.
    for &id in &ids {
        let first = writes.start_attempt(id).await.expect("start");
        fail(&pool, first.expect("startable").id, 1).await;
        let second = writes.start_attempt(id).await.expect("restart");
        assert_eq!(second.expect("startable").attempts, 2);
        fail(&pool, id, 2).await;
    }
    drop(writes);
    pool.close().await;

    let jobs = ids.len() as i64;
    let (all, hot) = update_counts(&services, 4 * jobs).await;
    assert_eq!(all, 4 * jobs);
    // Starts are HOT. The first failure also records the publish (no producer record came
    // first here), which takes the row out of the relay's partial index and cannot be HOT; the
    // second failure then is. A HOT update also needs room on its page, which pruning usually
    // but not always finds in time: a few may miss. An index on a column these writes change
    // would make none of them HOT.
    let eligible = 3 * jobs;
    assert!(
        hot <= eligible && hot * 10 >= eligible * 9,
        "{hot} of {eligible} starts and recorded failures were HOT"
    );
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
            let jobs = db::jobs::list(&pool, &filter, 50).await.expect("list");
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
