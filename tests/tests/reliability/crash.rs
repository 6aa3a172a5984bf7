//! kill -9 the worker mid-batch: every upload still ends ready, with exactly its variants.

use std::{collections::HashMap, time::Duration};

use image::{ImageFormat, Rgb, RgbImage};
use kiln_tests::{Options, Process, images, spawn_app_with};

#[tokio::test]
async fn killing_the_worker_mid_batch_loses_nothing_and_duplicates_nothing() {
    // A kill during a write leaves the store's staging file behind; the cleanup job removes
    // those, and the test runs it (with no grace period) before counting files.
    // The killed worker's running jobs are taken over once its heartbeat lapses: their
    // redelivered messages are dropped until then, and the scheduler's rescuer sends new ones.
    let mut app = spawn_app_with(Options {
        with_scheduler: true,
        ..Options::default()
            .env("KILN_CLEANUP_GRACE_SECS", "0")
            .env("KILN_HEARTBEAT_TIMEOUT", "3s")
    })
    .await;
    let photo = images::encode(
        &RgbImage::from_fn(640, 480, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90])),
        ImageFormat::Jpeg,
    );
    let mut ids = Vec::new();
    for _ in 0..100 {
        // Each upload its own bytes: identical ones would share one media's files.
        let answer = app.upload(images::with_unique_comment(&photo)).await;
        assert_eq!(answer.status, 202);
        ids.push(answer.body["id"].as_str().expect("id").to_owned());
    }
    let db = app.services.db().await;
    let ready = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM media WHERE status = 'ready'")
            .fetch_one(&db)
            .await
            .expect("count")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while ready().await < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut worker = app.worker.take().expect("worker");
    worker.signal("KILL");
    worker
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("killed");
    let finished_before_kill = ready().await;
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'running'")
        .fetch_one(&db)
        .await
        .expect("count");
    app.worker = Some(Process::spawn("kiln-worker", &[], app.env()).expect("restarted"));

    for id in &ids {
        assert_eq!(app.wait_for_media(id).await["status"], "ready", "{id}");
    }
    let cleanup = app.enqueue_schedule("hourly-cleanup");
    assert_eq!(app.wait_for_job(&cleanup).await["status"], "succeeded");
    let variants: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT media_id, count(*) FROM media_variants GROUP BY media_id")
            .fetch_all(&db)
            .await
            .expect("variants");
    let per_media: HashMap<_, _> = variants.into_iter().collect();
    let mut files: HashMap<String, usize> = HashMap::new();
    for path in app.stored_files() {
        let path = path.to_string_lossy().into_owned();
        if let Some(rest) = path.strip_prefix("variants/") {
            *files
                .entry(rest.split('/').next().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    let duplicated = ids
        .iter()
        .filter(|id| {
            per_media.get(&id.parse().expect("uuid")) != Some(&8) || files.get(*id) != Some(&8)
        })
        .count();
    let retried: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE attempts > 1")
        .fetch_one(&db)
        .await
        .expect("count");
    println!(
        "sent 100; ready before the kill {finished_before_kill}; running at the kill {running}; \
         taken over after restart {retried}; finished {}; lost 0; with wrong variant counts {duplicated}",
        ids.len()
    );
    assert_eq!(
        duplicated, 0,
        "every media has exactly 8 variant rows and 8 files"
    );
    let media_jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'media'")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(
        media_jobs, 100,
        "one media job per upload, however many attempts"
    );
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_worker_is_buried_instead_of_looping() {
    // Each crashed attempt is rescued once the dead worker's heartbeat lapses.
    let app = kiln_tests::spawn_app_with(kiln_tests::Options {
        without_worker: true,
        with_scheduler: true,
        ..kiln_tests::Options::default()
            .env("KILN_MAX_ATTEMPTS", "2")
            .env("KILN_HEARTBEAT_TIMEOUT", "3s")
    })
    .await;
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    let job_id = answer.body["job_id"].as_str().expect("job").to_owned();
    let mut env = app.env().clone();
    env.insert("KILN_TEST_FAULT".into(), "abort".into());

    // Each worker dies on the job (as on an out-of-memory kill); the broker redelivers it.
    let mut crashes = 0;
    for _ in 0..2 {
        let mut worker = Process::spawn("kiln-worker", &[], &env).expect("worker");
        let status = worker
            .wait_for_exit(Duration::from_secs(60))
            .await
            .expect("dies");
        assert!(!status.success());
        crashes += 1;
    }
    // The next worker sees the attempts used up and buries the job without running it.
    let mut survivor = Process::spawn("kiln-worker", &[], &env).expect("worker");
    let job = app.wait_for_job(&job_id).await;

    assert_eq!(job["status"], "dead", "{job}");
    assert!(
        job["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("worker died")),
        "{job}"
    );
    assert!(survivor.is_running(), "the third worker was not taken down");
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "failed");
    println!("sent 1 poison job; worker crashes {crashes}; then dead; worker alive");
}
