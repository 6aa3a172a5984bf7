//! Cron ticks fire exactly once, however many schedulers run, even when one dies mid-way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kiln_tests::{Options, Process, run, spawn_app_with};

const EVERY_SECOND: &str = "every-second|* * * * * *|cleanup";

async fn tick_times(db: &sqlx::PgPool) -> Vec<DateTime<Utc>> {
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE dedupe_key LIKE 'every-second@%'")
            .fetch_all(db)
            .await
            .expect("keys");
    let mut ticks: Vec<DateTime<Utc>> = keys
        .iter()
        .map(|k| {
            k.trim_start_matches("every-second@")
                .parse()
                .expect("a tick time")
        })
        .collect();
    ticks.sort();
    ticks
}

#[tokio::test]
async fn three_schedulers_emit_each_tick_once_even_when_one_is_killed() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env("KILN_SCHEDULES", EVERY_SECOND)
    })
    .await;
    let db = app.services.db().await;
    let mut schedulers: Vec<Process> = (0..3)
        .map(|_| Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler"))
        .collect();

    let wait_for_ticks = |n: usize| {
        let db = db.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let ticks = tick_times(&db).await;
                if ticks.len() >= n {
                    return ticks;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "only {} ticks",
                    ticks.len()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_for_ticks(5).await;
    schedulers[0].signal("KILL");
    let before_kill = tick_times(&db).await.len();
    wait_for_ticks(before_kill + 6).await;
    for scheduler in &mut schedulers[1..] {
        scheduler.signal("TERM");
        scheduler
            .wait_for_exit(Duration::from_secs(30))
            .await
            .expect("exits");
    }

    let ticks = tick_times(&db).await;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'cleanup'")
        .fetch_one(&db)
        .await
        .expect("count");
    let span = (*ticks.last().expect("ticks") - ticks[0]).num_seconds() + 1;
    println!(
        "3 schedulers (one killed after {before_kill} ticks): {} ticks over {span} s, {jobs} jobs",
        ticks.len()
    );
    assert_eq!(
        jobs as usize,
        ticks.len(),
        "one job per tick, none without a tick key"
    );
    assert_eq!(
        span as usize,
        ticks.len(),
        "every second has its tick: none missed, none doubled"
    );
}

#[tokio::test]
async fn kiln_scheduler_enqueue_fires_a_schedule_by_hand() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env("KILN_SCHEDULES", EVERY_SECOND)
    })
    .await;

    let output = run("kiln-scheduler", &["enqueue", "every-second"], app.env()).expect("runs");

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let (status, attempts) = app.job_row(&id).await;
    assert_eq!((status.as_str(), attempts), ("queued", 0));
    let unknown = run("kiln-scheduler", &["enqueue", "nope"], app.env()).expect("runs");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("every-second"));
}

/// The tick times of `schedule`'s jobs, oldest first.
async fn ticks_of(db: &sqlx::PgPool, schedule: &str) -> Vec<DateTime<Utc>> {
    let prefix = format!("{schedule}@");
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE starts_with(dedupe_key, $1)")
            .bind(&prefix)
            .fetch_all(db)
            .await
            .expect("keys");
    let mut ticks: Vec<DateTime<Utc>> = keys
        .iter()
        .map(|k| k.trim_start_matches(&prefix).parse().expect("a tick time"))
        .collect();
    ticks.sort();
    ticks
}

#[tokio::test]
async fn ticks_missed_while_no_scheduler_ran_are_counted_and_fired_once_by_policy() {
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env(
            "KILN_SCHEDULES",
            "catch-up|* * * * * *|cleanup|once;skipper|* * * * * *|cleanup|skip",
        )
    })
    .await;
    let db = app.services.db().await;
    let scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ticks_of(&db, "catch-up").await.len() < 2 || ticks_of(&db, "skipper").await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no ticks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scheduler.signal("KILL");
    drop(scheduler);
    let last_before = |ticks: &[DateTime<Utc>]| *ticks.last().expect("ticks");
    let catch_up_last = last_before(&ticks_of(&db, "catch-up").await);
    let skipper_last = last_before(&ticks_of(&db, "skipper").await);

    // Down long enough for several ticks to pass beyond the in-flight window (5 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let restarted_at = Utc::now();
    let restarted = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let metrics_addr = restarted
        .wait_for_field("metrics listening", "addr")
        .await
        .expect("metrics");
    restarted
        .wait_for_log("scheduler started")
        .await
        .expect("started");

    let schedules = app.admin(reqwest::Method::GET, "/v1/admin/schedules").await;
    assert_eq!(
        schedules.status,
        reqwest::StatusCode::OK,
        "{:?}",
        schedules.body
    );
    let by_name = |name: &str| {
        schedules.body["schedules"]
            .as_array()
            .expect("list")
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .expect("listed")
    };
    for name in ["catch-up", "skipper"] {
        let schedule = by_name(name);
        assert!(
            schedule["missed_ticks"].as_i64().expect("count") >= 3,
            "{schedule}"
        );
        assert!(schedule["last_fire"].is_string() && schedule["next_fire"].is_string());
    }
    assert_eq!(by_name("catch-up")["missed_policy"], "once");
    let in_gap = |ticks: Vec<DateTime<Utc>>, after: DateTime<Utc>| {
        ticks
            .into_iter()
            .filter(|t| *t > after && *t < restarted_at)
            .count()
    };
    assert_eq!(
        in_gap(ticks_of(&db, "catch-up").await, catch_up_last),
        1,
        "`once` fires one missed tick"
    );
    assert_eq!(
        in_gap(ticks_of(&db, "skipper").await, skipper_last),
        0,
        "`skip` fires none"
    );
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let missed = kiln_tests::metric_value(
        &metrics,
        "kiln_schedule_missed_ticks_total",
        &["schedule=\"skipper\""],
    );
    assert!(missed >= 3.0, "{metrics}");
}
