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

#[tokio::test]
async fn emails_with_a_nul_are_refused_alone_and_the_others_sent_with_them_are_accepted() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = app_with(&smtp).await;
    let requests = (0..55).map(|n| {
        let app = &app;
        async move {
            // Every eleventh carries a NUL, somewhere a client might put one.
            let body = match n % 11 {
                0 => json!({"to": "a@example.com", "subject": "s", "text": "x\u{0}y"}),
                _ => json!({"to": "a@example.com", "subject": format!("n{n}"), "text": "ok"}),
            };
            (n, app.send_email_as(&app.key, &body).await)
        }
    });
    let answers = futures::future::join_all(requests).await;
    let (mut accepted, mut refused) = (0, 0);
    for (n, answer) in answers {
        if n % 11 == 0 {
            assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{n}");
            assert_eq!(answer.error_code(), "validation_failed");
            assert!(
                answer.body["error"]["fields"]["text"].is_string(),
                "{:?}",
                answer.body
            );
            refused += 1;
        } else {
            assert_eq!(
                answer.status,
                StatusCode::ACCEPTED,
                "{n}: {:?}",
                answer.body
            );
            accepted += 1;
        }
    }
    assert_eq!((accepted, refused), (50, 5));
    println!("sent 55 emails at once, 5 with a NUL: 50 accepted, 5 refused, no 500");
}

#[tokio::test]
async fn an_email_at_the_documented_maximum_fits_and_a_bigger_body_is_413() {
    let smtp = SmtpServer::start(Mode::Accept).expect("smtp server");
    let app = app_with(&smtp).await;
    // 1 MiB of text and 1 MiB of HTML, each with characters JSON must escape.
    let text = "line\n".repeat(1024 * 1024 / 5);
    let html = "<p>\"q\"</p>".repeat(1024 * 1024 / 10);
    let at_max = json!({"to": "a@example.com", "subject": "big", "text": text, "html": html});
    let answer = app.send_email_as(&app.key, &at_max).await;
    assert_eq!(
        answer.status,
        StatusCode::ACCEPTED,
        "{:?}",
        answer.body["error"]
    );

    let huge = "x".repeat(8 * 1024 * 1024);
    let over = json!({"to": "a@example.com", "subject": "big", "text": huge});
    let answer = app.send_email_as(&app.key, &over).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "payload_too_large");
}
