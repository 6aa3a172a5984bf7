//! Templates and the built-in notifications: "media ready/failed" to the uploading key's
//! address (opt-in), templated emails through the API, and the daily digest.

use kiln_tests::{
    Options, images,
    smtp::{Mode, SmtpServer},
    spawn_app_with,
};
use reqwest::StatusCode;
use serde_json::json;

async fn app_with(smtp: &SmtpServer, options: Options) -> kiln_tests::TestApp {
    spawn_app_with(
        options
            .env("KILN_SMTP_URL", smtp.url())
            .env("KILN_EMAIL_FROM", "Kiln <noreply@kiln.test>")
            .env("KILN_PUBLIC_URL", "https://media.example")
            .env(
                "KILN_URL_SIGNING_KEY",
                "notifications-test-url-signing-key-0123456789",
            ),
    )
    .await
}

async fn email_jobs(app: &kiln_tests::TestApp) -> i64 {
    let db = app.services.db().await;
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'email'")
        .fetch_one(&db)
        .await
        .expect("count")
}

/// The message with quoted-printable soft line breaks undone, so long lines read whole.
fn unfolded(data: &str) -> String {
    data.replace("=\r\n", "").replace("=\n", "")
}

fn header_value<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    data.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}: ")))
        .map(|l| l[name.len() + 2..].trim())
}

#[tokio::test]
async fn an_opted_in_key_hears_when_its_media_is_ready_and_when_it_failed() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = app_with(&smtp, Options::default()).await;
    let notified = app.key_notifying("tenant-a", "media", "Ann <ann@example.com>");

    // A key without an address sends nothing.
    let quiet = app.upload(images::sideways_jpeg(64, 32)).await;
    let media = app
        .wait_for_media(quiet.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(media["status"], "ready");
    assert_eq!(email_jobs(&app).await, 0, "no notification without opt-in");

    let ready = app
        .upload_as(&notified, images::sideways_jpeg(64, 32))
        .await;
    let id = ready.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.wait_for_media(&id).await["status"], "ready");
    let messages = smtp.wait_for(1).await;
    let data = messages[0]["data"].as_str().expect("data");
    assert_eq!(messages[0]["rcpt_tos"][0], "ann@example.com");
    assert!(
        header_value(data, "subject").is_some_and(|s| s.starts_with("Your image is ready")),
        "{data}"
    );
    assert!(
        unfolded(data).contains(&format!("https://media.example/v1/media/{id}/variants/")),
        "links use KILN_PUBLIC_URL: {data}"
    );
    assert!(data.contains("text/html"), "both parts: {data}");

    let mut corrupt = images::bench_photo("photo-4mp.jpg");
    corrupt.truncate(corrupt.len() / 3);
    let failed = app.upload_as(&notified, corrupt).await;
    let failed_id = failed.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.wait_for_media(&failed_id).await["status"], "failed");
    let messages = smtp.wait_for(2).await;
    let data = messages[1]["data"].as_str().expect("data");
    assert_eq!(
        header_value(data, "subject"),
        Some("Your image could not be processed")
    );
    assert!(data.contains(&failed_id), "{data}");
    assert!(
        data.contains("decode"),
        "the reason is in the email: {data}"
    );
}

#[tokio::test]
async fn a_templated_email_is_rendered_from_the_operators_templates() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let templates = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        templates.path().join("welcome.subject"),
        "Welcome, {{ name }}",
    )
    .expect("write");
    std::fs::write(
        templates.path().join("welcome.txt"),
        "Hello {{ name }}, your plan is {{ plan }}.",
    )
    .expect("write");
    std::fs::write(
        templates.path().join("welcome.html"),
        "<p>Hello {{ name }}</p>",
    )
    .expect("write");
    let app = app_with(
        &smtp,
        Options::default().env(
            "KILN_EMAIL_TEMPLATES",
            templates.path().display().to_string(),
        ),
    )
    .await;

    let answer = app
        .send_email_as(
            &app.key,
            &json!({"to": "bob@example.com", "template": "welcome",
                    "data": {"name": "Bob <script>", "plan": "pro"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let messages = smtp.wait_for(1).await;
    let data = messages[0]["data"].as_str().expect("data");
    assert_eq!(
        header_value(data, "subject"),
        Some("Welcome, Bob <script>"),
        "{data}"
    );
    assert!(data.contains("your plan is pro."), "{data}");
    assert!(
        data.contains("Bob &lt;script&gt;"),
        "HTML is escaped: {data}"
    );

    for (body, field) in [
        (
            json!({"to": "bob@example.com", "template": "nope"}),
            "template",
        ),
        (
            json!({"to": "bob@example.com", "template": "welcome", "data": {"name": "x"}}),
            "data",
        ),
    ] {
        let answer = app.send_email_as(&app.key, &body).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            answer.body["error"]["fields"][field].is_string(),
            "{field}: {:?}",
            answer.body
        );
    }
}

#[tokio::test]
async fn the_daily_digest_summarises_each_opted_in_tenant() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = app_with(&smtp, Options::default()).await;
    let _digest_key = app.key_notifying("tenant-a", "media", "ops@example.com");
    let _silent = app.key_for("tenant-b", "media");
    let uploaded = app.upload(images::sideways_jpeg(64, 32)).await;
    app.wait_for_media(uploaded.body["id"].as_str().expect("id"))
        .await;

    let job_id = app.enqueue_schedule("daily-digest");
    let job = app.wait_for_job(&job_id).await;

    assert_eq!(job["status"], "succeeded", "{job}");
    let messages = smtp.wait_for(1).await;
    assert_eq!(messages.len(), 1, "only the opted-in tenant gets one");
    let data = messages[0]["data"].as_str().expect("data");
    assert_eq!(messages[0]["rcpt_tos"][0], "ops@example.com");
    assert_eq!(
        header_value(data, "subject"),
        Some("Kiln daily digest for tenant-a: 1 ready, 0 failed"),
        "{data}"
    );
    assert!(data.contains("1 uploaded"), "{data}");
}
