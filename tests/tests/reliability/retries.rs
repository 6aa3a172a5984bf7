//! Transient failures are retried with backoff; exhausted or permanent ones go dead.

use kiln_tests::{Options, images, spawn_app_with};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn transient_storage_failures_are_retried_through_the_delay_ladder_and_succeed() {
    // The worker's first two storage writes fail, as a flaky object store would.
    let app = spawn_app_with(Options::default().env("KILN_TEST_FAIL_STORAGE_WRITES", "2")).await;

    let answer = app.upload(images::sideways_jpeg(120, 60)).await;
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;

    assert_eq!(media["status"], "ready", "{media}");
    let job_id = answer.body["job_id"].as_str().expect("job");
    let job = app.get(&format!("/v1/jobs/{job_id}")).await;
    println!(
        "sent 1 job; attempts {}; status {}",
        job.body["attempts"], job.body["status"]
    );
    assert_eq!(job.body["status"], "succeeded");
    assert_eq!(job.body["attempts"], 3, "two failed attempts, then success");
    assert_eq!(job.body["last_error"], serde_json::Value::Null);
    let retries = app.worker.as_ref().expect("worker").log_events();
    let scheduled: Vec<_> = retries
        .iter()
        .filter(|e| e["fields"]["message"] == "attempt failed; retrying later")
        .collect();
    assert_eq!(
        scheduled.len(),
        2,
        "each failure scheduled one delayed retry"
    );
    assert!(
        scheduled
            .iter()
            .all(|e| e["fields"]["retry_in_ms"].as_u64().is_some_and(|ms| ms > 0))
    );
}

#[tokio::test]
async fn a_job_out_of_attempts_goes_dead_with_its_error_and_an_operators_retry_succeeds() {
    let app = spawn_app_with(
        Options::default()
            .env("KILN_TEST_FAIL_STORAGE_WRITES", "2")
            .env("KILN_MAX_ATTEMPTS", "2"),
    )
    .await;
    let answer = app.upload(images::sideways_jpeg(120, 60)).await;
    let id = answer.body["id"].as_str().expect("id").to_owned();
    let job_id = answer.body["job_id"].as_str().expect("job").to_owned();

    let media = app.wait_for_media(&id).await;

    assert_eq!(media["status"], "failed", "{media}");
    let job = app.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(job.body["status"], "dead");
    assert_eq!(job.body["attempts"], 2);
    let error = job.body["last_error"].as_str().expect("error kept");
    assert!(
        error.contains("out of attempts") && error.contains("injected"),
        "{error}"
    );
    let dead = app.dead_messages(1).await;
    assert!(
        dead[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("injected")),
        "{dead:?}"
    );
    assert!(String::from_utf8_lossy(&dead[0].body).contains(&job_id));

    let retried = app
        .admin(Method::POST, &format!("/v1/admin/jobs/{job_id}/retry"))
        .await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{:?}", retried.body);
    let media = app.wait_for_media(&id).await;

    assert_eq!(media["status"], "ready", "{media}");
    let job = app.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(job.body["status"], "succeeded");
    println!(
        "sent 1 job; dead after 2 attempts; operator retry: {}",
        job.body["status"]
    );
}

#[tokio::test]
async fn a_panicking_handler_fails_its_job_not_the_worker() {
    let mut app = spawn_app_with(Options::default().env("KILN_TEST_FAULT", "panic")).await;

    let mut jobs = Vec::new();
    for _ in 0..2 {
        let answer = app.upload(images::sideways_jpeg(64, 32)).await;
        jobs.push(answer.body["job_id"].as_str().expect("job").to_owned());
    }

    for job_id in &jobs {
        let job = app.wait_for_job(job_id).await;
        assert_eq!(job["status"], "dead", "{job}");
        assert_eq!(job["attempts"], 1, "a panic is a bug: not retried");
        let error = job["last_error"].as_str().expect("error");
        assert!(
            error.contains("handler panicked") && error.contains("injected panic"),
            "{error}"
        );
    }
    let worker = app.worker.as_mut().expect("worker");
    assert!(worker.is_running(), "the worker survived both panics");
    println!("sent 2 panicking jobs; dead 2; worker alive");
}

#[tokio::test]
async fn a_handler_over_its_time_limit_fails_the_attempt_and_goes_dead_when_out_of_attempts() {
    let app = spawn_app_with(
        Options::default()
            .env("KILN_TEST_FAULT", "hang")
            .env("KILN_JOB_TIMEOUT_SECS", "1")
            .env("KILN_MAX_ATTEMPTS", "2"),
    )
    .await;

    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    let job = app
        .wait_for_job(answer.body["job_id"].as_str().expect("job"))
        .await;

    assert_eq!(job["status"], "dead", "{job}");
    assert_eq!(job["attempts"], 2);
    let error = job["last_error"].as_str().expect("error");
    assert!(
        error.contains("timed out after 1s") && error.contains("out of attempts"),
        "{error}"
    );
}

#[tokio::test]
async fn rendering_over_its_cpu_budget_twice_in_a_row_is_dead_without_more_attempts() {
    // The rendering itself (not a wait, not I/O) runs past three quarters of the time limit on
    // every attempt: once may be a busy machine, twice in a row is the image, and the job is
    // dead with attempts to spare.
    let app = spawn_app_with(
        Options::default()
            .env("KILN_TEST_FAULT", "cpu-slow")
            .env("KILN_JOB_TIMEOUT_SECS", "2")
            .env("KILN_MAX_ATTEMPTS", "5"),
    )
    .await;

    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    let job = app
        .wait_for_job(answer.body["job_id"].as_str().expect("job"))
        .await;

    assert_eq!(job["status"], "dead", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let error = job["last_error"].as_str().expect("error");
    assert!(error.contains("costs too much to process"), "{error}");
    let media = app
        .wait_for_media(answer.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "failed");
}
