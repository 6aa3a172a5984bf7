//! Many small jobs at once, so the worker's batched writes and coalesced acks are exercised
//! together: every job succeeds exactly once and every message is acked (none is left in the
//! queue once the worker has stopped and returned what it had not acked).

use std::time::Duration;

use kiln_core::{
    Config,
    db::{
        self,
        job_writes::JobWrites,
        jobs::{Job, NewJob},
    },
    jobs::JobKind,
    queue::{self, Publisher},
};
use kiln_tests::{Options, spawn_app_with};
use uuid::Uuid;

const JOBS: usize = 500;

#[tokio::test]
async fn hundreds_of_noop_jobs_succeed_once_and_are_all_acked() {
    let mut app = spawn_app_with(Options::default().env("KILN_WORKER_CONCURRENCY", "64")).await;
    let env = app.env().clone();
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("config");
    let pool = app.services.db().await;
    let writes = JobWrites::spawn(pool.clone());
    let publisher = Publisher::new(config.amqp_url.clone(), "test", config.topology());

    let mut jobs: Vec<Job> = Vec::new();
    for _ in 0..JOBS {
        let new = NewJob {
            id: Uuid::now_v7(),
            tenant: None,
            kind: JobKind::Noop,
            payload: serde_json::json!({}),
            max_attempts: 3,
            traceparent: None,
        };
        jobs.push(db::jobs::insert(&pool, &new).await.expect("insert"));
    }
    let publishes = jobs
        .iter()
        .map(|job| queue::publish_committed(&writes, &publisher, job));
    futures::future::join_all(publishes).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (succeeded, attempts, unpublished) = loop {
        let counts: (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),
                    coalesce(sum(attempts), 0),
                    count(*) FILTER (WHERE published_at IS NULL)
             FROM jobs WHERE kind = 'noop'",
        )
        .fetch_one(&pool)
        .await
        .expect("counts");
        if counts.0 as usize == JOBS || tokio::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "noop jobs: {succeeded} of {JOBS} succeeded, {attempts} attempts, {unpublished} unpublished"
    );
    assert_eq!(succeeded as usize, JOBS);
    assert_eq!(attempts as usize, JOBS, "each job ran once");
    assert_eq!(unpublished, 0, "every confirmed publish was recorded");

    // Unacked messages return to the queue when the worker's connection closes.
    let worker = app.worker.as_mut().expect("worker");
    worker.signal("TERM");
    assert!(
        worker
            .wait_for_exit(Duration::from_secs(60))
            .await
            .expect("exit")
            .success()
    );
    let ready = app.queue_depth("maintenance").await;
    assert_eq!(ready, 0, "every message was acked");
}
