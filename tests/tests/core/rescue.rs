//! Who holds a running job, and what the rescuer may claim: the rows' side of "no job is ever
//! stranded" (the end-to-end side is in `reliability::rescue`).

use std::time::Duration;

use kiln_core::{
    db::{
        self,
        workers::{Beat, Registration},
    },
    jobs::JobKind,
};
use uuid::Uuid;

use crate::support::{backdate, database, insert, register};

#[tokio::test]
async fn a_job_running_on_a_live_worker_is_taken_over_only_once_that_worker_is_gone() {
    let (_services, pool) = database().await;
    let long = Duration::from_secs(600);
    let holder = register(&pool, long).await;
    let other = register(&pool, long).await;
    let job = insert(&pool, JobKind::Noop).await;

    let first = db::jobs::start_attempt(&pool, job.id, &holder)
        .await
        .expect("start");
    assert_eq!(first.expect("startable").attempts, 1);
    // A second message for it (a rescue's, or a redelivery) while its worker lives: dropped.
    let second = db::jobs::start_attempt(&pool, job.id, &other)
        .await
        .expect("start");
    assert!(second.is_none(), "taken from a live worker");
    let batched = db::job_writes::JobWrites::spawn(pool.clone());
    let second = batched.start_attempt(job.id, &other).await.expect("start");
    assert!(
        second.is_none(),
        "taken from a live worker by a batched start"
    );

    db::workers::stop(&pool, holder.worker).await.expect("stop");
    let taken = batched.start_attempt(job.id, &other).await.expect("start");
    assert_eq!(taken.expect("abandoned").attempts, 2);
}

#[tokio::test]
async fn a_worker_whose_heartbeat_lapsed_loses_its_job_to_the_rescuer_once_per_window() {
    let (_services, pool) = database().await;
    let hour = Duration::from_secs(3600);
    let silent = register(&pool, hour).await;
    let beating = register(&pool, hour).await;
    let abandoned = insert(&pool, JobKind::Noop).await;
    let held = insert(&pool, JobKind::Noop).await;
    db::jobs::start_attempt(&pool, abandoned.id, &silent)
        .await
        .expect("start");
    db::jobs::start_attempt(&pool, held.id, &beating)
        .await
        .expect("start");
    backdate(&pool, "workers", "heartbeat_at", silent.worker).await;

    let claimed = db::rescue::claim_abandoned(&pool, hour, hour, 100)
        .await
        .expect("claim");
    let ids: Vec<Uuid> = claimed.iter().map(|j| j.id).collect();
    assert_eq!(ids, [abandoned.id]);
    assert!(
        claimed[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("stopped or let it go")),
        "{:?}",
        claimed[0].last_error
    );
    // Claimed once per window, however many passes (or schedulers) look again.
    let again = db::rescue::claim_abandoned(&pool, hour, hour, 100)
        .await
        .expect("claim");
    assert!(again.is_empty(), "claimed twice in one window");
    // Its message starts a new attempt on a live worker.
    let taken = db::jobs::start_attempt(&pool, abandoned.id, &beating)
        .await
        .expect("start");
    assert_eq!(taken.expect("abandoned").attempts, 2);
    let held_again = db::jobs::start_attempt(&pool, held.id, &silent)
        .await
        .expect("start");
    assert!(held_again.is_none(), "taken from a live worker");
    // That attempt's worker dies too: the job was used since its rescue, so it is rescued
    // again within the window (a job that kills every worker must reach its last attempt).
    backdate(&pool, "workers", "heartbeat_at", beating.worker).await;
    let claimed = db::rescue::claim_abandoned(&pool, hour, hour, 100)
        .await
        .expect("claim");
    let mut ids: Vec<Uuid> = claimed.iter().map(|j| j.id).collect();
    ids.sort();
    let mut both = vec![abandoned.id, held.id];
    both.sort();
    assert_eq!(ids, both);
}

#[tokio::test]
async fn overdue_queued_and_failed_jobs_are_claimed_and_recent_ones_are_not() {
    let (_services, pool) = database().await;
    let hour = Duration::from_secs(3600);
    let starter = register(&pool, hour).await;
    let published = |id| {
        let pool = pool.clone();
        async move {
            db::jobs::mark_published(&pool, id)
                .await
                .expect("published")
        }
    };
    let failed = |id, retry_in| {
        let pool = pool.clone();
        async move {
            db::jobs::start_attempt(&pool, id, &starter)
                .await
                .expect("start");
            let current = db::jobs::mark_failed(&pool, id, 1, "smtp 451", retry_in).await;
            assert!(current.expect("fail"));
        }
    };
    let queued_long_ago = insert(&pool, JobKind::Noop).await.id;
    published(queued_long_ago).await;
    backdate(&pool, "jobs", "published_at", queued_long_ago).await;
    let queued_now = insert(&pool, JobKind::Noop).await.id;
    published(queued_now).await;
    let retry_long_overdue = insert(&pool, JobKind::Noop).await.id;
    failed(retry_long_overdue, Duration::ZERO).await;
    backdate(&pool, "jobs", "retry_at", retry_long_overdue).await;
    let retry_later = insert(&pool, JobKind::Noop).await.id;
    failed(retry_later, hour).await;
    let unpublished = insert(&pool, JobKind::Noop).await.id;

    // Published queued jobs and due retries should have a message in the queue.
    let expected = db::rescue::expected_in_queues(&pool)
        .await
        .expect("expected");
    assert_eq!(
        expected.iter().map(|e| e.jobs).sum::<i64>(),
        3,
        "{expected:?}"
    );

    let kinds = vec!["noop".to_owned()];
    let claimed = db::rescue::claim_overdue(&pool, &kinds, hour, 100)
        .await
        .expect("claim");
    let mut ids: Vec<Uuid> = claimed.iter().map(|j| j.id).collect();
    ids.sort();
    let mut want = vec![queued_long_ago, retry_long_overdue];
    want.sort();
    // Not the recent ones, nor the unpublished one (the outbox relay's).
    assert_eq!(ids, want);
    assert!(
        ![queued_now, retry_later, unpublished]
            .iter()
            .any(|id| ids.contains(id))
    );
    let other_kinds = vec!["email".to_owned()];
    let none = db::rescue::claim_overdue(&pool, &other_kinds, hour, 100)
        .await
        .expect("claim");
    assert!(none.is_empty(), "claimed jobs of another queue");
    let again = db::rescue::claim_overdue(&pool, &kinds, hour, 100)
        .await
        .expect("claim");
    assert!(again.is_empty(), "claimed twice in one window");
    // A claim whose publish failed is released for the next pass.
    db::rescue::release(&pool, &[queued_long_ago])
        .await
        .expect("release");
    let retried = db::rescue::claim_overdue(&pool, &kinds, hour, 100)
        .await
        .expect("claim");
    assert_eq!(
        retried.iter().map(|j| j.id).collect::<Vec<_>>(),
        [queued_long_ago]
    );
}

#[tokio::test]
async fn a_live_worker_holds_only_the_jobs_its_heartbeats_list() {
    let (_services, pool) = database().await;
    let hour = Duration::from_secs(3600);
    let starter = register(&pool, hour).await;
    let listed = insert(&pool, JobKind::Noop).await.id;
    let dropped = insert(&pool, JobKind::Noop).await.id;
    for id in [listed, dropped] {
        db::jobs::start_attempt(&pool, id, &starter)
            .await
            .expect("start");
        // Started long before the worker's latest heartbeat, which had time to list them.
        backdate(&pool, "jobs", "started_at", id).await;
    }
    // The worker runs `listed`; `dropped`'s attempt ended without its outcome recorded.
    let worker = Registration {
        id: starter.worker,
        host: "test-host".into(),
        pid: 1,
        queues: vec!["maintenance".into()],
    };
    let beat = Beat {
        running: vec![listed],
        ..Beat::default()
    };
    db::workers::heartbeat(&pool, &worker, &beat)
        .await
        .expect("heartbeat");

    let claimed = db::rescue::claim_abandoned(&pool, hour, hour, 100)
        .await
        .expect("claim");
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [dropped]);
    // Its own worker may take it over too; the listed one stays its.
    let other = register(&pool, hour).await;
    let taken = db::jobs::start_attempt(&pool, dropped, &other)
        .await
        .expect("start");
    assert_eq!(taken.expect("abandoned").attempts, 2);
    let kept = db::jobs::start_attempt(&pool, listed, &other)
        .await
        .expect("start");
    assert!(kept.is_none(), "taken from the worker that runs it");
}
