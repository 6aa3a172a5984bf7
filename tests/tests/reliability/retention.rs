//! Retention end to end: finished jobs past their retention are pruned by the `prune` job, a
//! pruned job answers 404 while its media keeps working, jobs within their retention stay,
//! and a sent email keeps none of its personal data.

use std::time::Duration;

use kiln_tests::{
    Options, images,
    smtp::{Mode, SmtpServer},
    spawn_app_with,
};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn finished_jobs_past_their_retention_are_pruned_and_their_media_keeps_working() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = spawn_app_with(
        Options::default()
            .env("KILN_SMTP_URL", smtp.url())
            .env("KILN_RETAIN_SUCCEEDED", "1s")
            .env("KILN_RETAIN_DEAD", "1h"),
    )
    .await;
    let good = app.upload(images::sideways_jpeg(64, 32)).await;
    let mut broken = images::bench_photo("photo-4mp.jpg");
    broken.truncate(broken.len() / 3);
    let broken = app.upload(broken).await;
    let email = app
        .send_email_as(
            &app.key,
            &json!({"to": "ann@example.com", "subject": "Private", "text": "secret body"}),
        )
        .await;
    assert_eq!(email.status, StatusCode::ACCEPTED);
    let field = |answer: &kiln_tests::Answer, name: &str| {
        answer.body[name].as_str().expect("field").to_owned()
    };
    let (media, media_job) = (field(&good, "id"), field(&good, "job_id"));
    let dead_job = field(&broken, "job_id");
    let email_job = field(&email, "job_id");
    assert_eq!(app.wait_for_media(&media).await["status"], "ready");
    assert_eq!(app.wait_for_job(&dead_job).await["status"], "dead");
    assert_eq!(app.wait_for_job(&email_job).await["status"], "succeeded");
    smtp.wait_for(1).await;

    // Sent: the job keeps no recipient, subject or body.
    let id: uuid::Uuid = email_job.parse().expect("uuid");
    let payload: serde_json::Value = sqlx::query_scalar("SELECT payload FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&app.services.db().await)
        .await
        .expect("payload");
    let kept = payload.to_string();
    assert!(
        !kept.contains("ann@example.com")
            && !kept.contains("secret body")
            && !kept.contains("Private"),
        "{kept}"
    );

    // Prune until the succeeded jobs, past their second of retention, are gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let prune = app.enqueue_schedule("minutely-prune");
        assert_eq!(app.wait_for_job(&prune).await["status"], "succeeded");
        let gone = app.get(&format!("/v1/jobs/{media_job}")).await.status == StatusCode::NOT_FOUND
            && app.get(&format!("/v1/jobs/{email_job}")).await.status == StatusCode::NOT_FOUND;
        if gone {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let pruned = app.get(&format!("/v1/jobs/{media_job}")).await;
    assert_eq!(pruned.error_code(), "not_found");
    // Its media is untouched: still ready, its variants still served.
    let after = app.get(&format!("/v1/media/{media}")).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.body["status"], "ready");
    let variant = after.body["variants"][0]["url"].as_str().expect("url");
    assert_eq!(app.download(variant).await.status(), StatusCode::OK);
    // The dead job is within its own retention (an hour): kept for operators.
    let dead = app.get(&format!("/v1/jobs/{dead_job}")).await;
    assert_eq!(dead.body["status"], "dead", "{:?}", dead.body);
    println!("pruned the succeeded media and email jobs; media still ready; dead job kept");
}
