//! Worker concurrency is what the operator configured: with two slots, a mixed flood of media,
//! email and maintenance jobs never has more than two running at once, although each queue's
//! consumer could hold two deliveries of its own.

use chrono::{DateTime, Utc};
use kiln_tests::{
    Options, Process, images,
    smtp::{Mode, SmtpServer},
    spawn_app_with,
};
use serde_json::json;

#[tokio::test]
async fn with_two_slots_no_more_than_two_jobs_of_any_queues_ever_run_at_once() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
            .env("KILN_SMTP_URL", smtp.url())
            .env("KILN_WORKER_CONCURRENCY", "2")
    })
    .await;
    // Everything is queued before the worker starts, so every queue has work at once.
    let mut jobs = Vec::new();
    for n in 0..12 {
        let media = app.upload(images::sideways_jpeg(96, 64)).await;
        jobs.push(media.body["job_id"].as_str().expect("job").to_owned());
        let email = app
            .send_email_as(
                &app.key,
                &json!({"to": "ann@example.com", "subject": format!("n{n}"), "text": "hi"}),
            )
            .await;
        jobs.push(email.body["job_id"].as_str().expect("job").to_owned());
        if n % 3 == 0 {
            jobs.push(app.enqueue_schedule("minutely-prune"));
        }
    }
    let _worker = Process::spawn("kiln-worker", &[], app.env()).expect("worker");
    for job in &jobs {
        assert_eq!(app.wait_for_job(job).await["status"], "succeeded", "{job}");
    }

    // Each job's recorded run (start to recorded outcome) lies inside the slot it held, so the
    // most runs that overlap is at most the slots in use at once.
    let runs: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT started_at, finished_at FROM jobs WHERE status = 'succeeded' AND attempts = 1",
    )
    .fetch_all(&app.services.db().await)
    .await
    .expect("runs");
    assert_eq!(runs.len(), jobs.len(), "each job ran once");
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for (start, end) in &runs {
        edges.push((*start, 1));
        edges.push((*end, -1));
    }
    // At the same instant an end comes before a start: that run had let go of its slot.
    edges.sort();
    let (mut running, mut most) = (0, 0);
    for (_, step) in edges {
        running += step;
        most = most.max(running);
    }
    println!(
        "{} jobs of three queues with 2 slots: at most {most} ran at once",
        runs.len()
    );
    assert!(
        most <= 2,
        "{most} jobs ran at once with KILN_WORKER_CONCURRENCY=2"
    );
}
