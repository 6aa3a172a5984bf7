//! Email through a real SMTP server: what arrives, and the retry and dead paths.

use kiln_tests::{
    Options,
    smtp::{Mode, SmtpServer},
    spawn_app_with,
};
use reqwest::StatusCode;
use serde_json::json;

async fn app_with(smtp: &SmtpServer) -> kiln_tests::TestApp {
    spawn_app_with(
        Options::default()
            .env("KILN_SMTP_URL", smtp.url())
            .env("KILN_EMAIL_FROM", "Kiln Test <noreply@kiln.test>"),
    )
    .await
}

#[tokio::test]
async fn a_multipart_email_arrives_with_its_headers_both_parts_and_a_stable_message_id() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = app_with(&smtp).await;

    let answer = app
        .send_email_as(
            &app.key,
            &json!({
                "to": ["Alice <alice@example.com>"],
                "cc": "carol@example.com",
                "bcc": ["hidden@example.com"],
                "subject": "Your photos are ready",
                "text": "Plain hello",
                "html": "<p>HTML hello</p>"
            }),
        )
        .await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let job_id = answer.body["job_id"].as_str().expect("job").to_owned();
    assert_eq!(
        answer.headers["location"],
        format!("/v1/jobs/{job_id}").as_str()
    );
    let messages = smtp.wait_for(1).await;
    let message = &messages[0];
    let data = message["data"].as_str().expect("data");
    assert_eq!(message["mail_from"], "noreply@kiln.test");
    let rcpt: Vec<&str> = message["rcpt_tos"]
        .as_array()
        .expect("rcpt")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(rcpt.len(), 3, "{rcpt:?}");
    assert!(rcpt.contains(&"hidden@example.com"), "bcc is delivered");
    assert!(
        !data.contains("hidden@example.com"),
        "but never shown in the headers"
    );
    assert!(data.contains("Subject: Your photos are ready"), "{data}");
    assert!(data.contains("To: Alice <alice@example.com>"), "{data}");
    assert!(
        data.contains(&format!("Message-ID: <{job_id}@kiln.test>")),
        "{data}"
    );
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(
        data.contains("text/plain") && data.contains("Plain hello"),
        "{data}"
    );
    assert!(
        data.contains("text/html") && data.contains("<p>HTML hello</p>"),
        "{data}"
    );
    let job = app.wait_for_job(&job_id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["kind"], "email");
}

#[tokio::test]
async fn an_smtp_451_is_retried_and_the_email_then_arrives() {
    let smtp = SmtpServer::start(Mode::TempFail(2)).expect("smtp server");
    let app = app_with(&smtp).await;

    let answer = app
        .send_email_as(
            &app.key,
            &json!({"to": "bob@example.com", "subject": "Hi", "text": "Hello"}),
        )
        .await;
    let job = app
        .wait_for_job(answer.body["job_id"].as_str().expect("job"))
        .await;

    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 3, "two 451s, then 250");
    assert_eq!(smtp.messages().len(), 1, "delivered once");
}

#[tokio::test]
async fn an_smtp_550_is_permanent_and_the_job_dies_with_the_servers_reply() {
    let smtp = SmtpServer::start(Mode::Reject).expect("smtp server");
    let app = app_with(&smtp).await;

    let answer = app
        .send_email_as(
            &app.key,
            &json!({"to": "nobody@example.com", "subject": "Hi", "text": "Hello"}),
        )
        .await;
    let job = app
        .wait_for_job(answer.body["job_id"].as_str().expect("job"))
        .await;

    assert_eq!(job["status"], "dead", "{job}");
    assert_eq!(job["attempts"], 1, "a 5xx is never retried");
    let error = job["last_error"].as_str().expect("error");
    assert!(
        error.contains("550") && error.contains("mailbox unavailable"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_email_requests_get_field_errors_and_no_job() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = app_with(&smtp).await;

    let answer = app
        .send_email_as(
            &app.key,
            &json!({
                "to": ["ok@example.com", "evil@example.com\r\nBcc: victim@example.com"],
                "subject": "Hi\r\nX-Injected: yes",
            }),
        )
        .await;

    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        answer.body
    );
    assert_eq!(answer.error_code(), "validation_failed");
    let fields = &answer.body["error"]["fields"];
    assert!(
        fields["to[1]"].is_string() && fields["subject"].is_string() && fields["text"].is_string(),
        "{fields}"
    );
    let media_only = app.key_for("tenant-a", "media");
    let forbidden = app
        .send_email_as(
            &media_only,
            &json!({"to": "a@example.com", "subject": "s", "text": "t"}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let not_json = app
        .client
        .post(format!("{}/v1/emails", app.address))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(not_json.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.job_count().await, 0);
}
