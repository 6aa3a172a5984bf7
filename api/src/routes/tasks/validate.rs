//! What a task request may hold, checked field by field before anything is written: each
//! problem is reported under its field's path (`url`, `headers.connection`, `tasks[3].body`).

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{routes::webhooks::url_problem, state::AppState};

/// The largest body a task may carry, decoded.
pub const MAX_BODY: usize = 1024 * 1024;
const MAX_HEADERS: usize = 50;
const MAX_DELAY_SECS: u64 = 30 * 86_400;
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Headers a task may not set: hop-by-hop ones (they describe one connection, not the
/// request), those the client computes, and the signature's.
const REFUSED: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
];

/// The backoff between attempts, in seconds.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt (5 by default); it doubles after each.
    #[schema(minimum = 0.1, maximum = 86400)]
    pub min_backoff: Option<f64>,
    /// The longest wait (3600 by default).
    #[schema(minimum = 0.1, maximum = 86400)]
    pub max_backoff: Option<f64>,
}

/// One HTTP task: what Kiln sends, when, and how it retries.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://app.example.com/jobs/send-report", "body": "{\"report\": 42}", "headers": {"content-type": "application/json"}, "delay_secs": 60}))]
pub struct TaskRequest {
    /// `http` or `https`, a public address (unless `KILN_WEBHOOK_ALLOW_NETS` says otherwise).
    #[schema(max_length = 2048)]
    pub url: String,
    /// `GET`, `POST` (the default), `PUT`, `PATCH` or `DELETE`.
    pub method: Option<String>,
    /// Request headers; hop-by-hop ones, `host`, `content-length` and `webhook-*` are refused.
    #[schema(value_type = Option<Object>)]
    pub headers: Option<Map<String, Value>>,
    /// The body as text (at most 1 MiB).
    pub body: Option<String>,
    /// The body as base64, for bytes that are not text (at most 1 MiB decoded).
    pub body_base64: Option<String>,
    /// Not before this time (at most 30 days ahead).
    pub run_at: Option<DateTime<Utc>>,
    /// Not before this many seconds from now (at most 30 days).
    #[schema(minimum = 0, maximum = 2592000)]
    pub delay_secs: Option<u64>,
    /// A repeat with the same key returns the task made first, as long as it is kept.
    #[schema(min_length = 1, max_length = 200)]
    pub dedupe_key: Option<String>,
    /// The task queue whose limits apply (`default` unless given).
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub queue: Option<String>,
    /// Attempts in all (8 by default).
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i32>,
    /// One attempt's time limit (30 s by default).
    #[schema(minimum = 1, maximum = 300)]
    pub timeout_secs: Option<i32>,
    pub retry: Option<RetryPolicy>,
}

/// A task request, checked.
pub struct CheckedTask {
    pub url: String,
    pub method: String,
    pub headers: Value,
    pub body: Vec<u8>,
    pub run_at: DateTime<Utc>,
    pub dedupe_key: Option<String>,
    pub queue: String,
    pub max_attempts: i32,
    pub timeout_secs: i32,
    pub min_backoff_ms: i64,
    pub max_backoff_ms: i64,
}

/// Checks a request; problems go into `fields` under `prefix` (empty, or `tasks[3].`).
pub fn check(
    state: &AppState,
    request: TaskRequest,
    prefix: &str,
    fields: &mut Map<String, Value>,
) -> Option<CheckedTask> {
    let before = fields.len();
    let mut problem = |field: &str, message: String| {
        fields.insert(format!("{prefix}{field}"), json!(message));
    };
    if let Some(issue) = url_problem(state, &request.url) {
        problem("url", issue);
    }
    let method = request.method.unwrap_or_else(|| "POST".into());
    if !METHODS.contains(&method.as_str()) {
        problem("method", format!("one of {}", METHODS.join(", ")));
    }
    let headers = request.headers.unwrap_or_default();
    if headers.len() > MAX_HEADERS {
        problem("headers", format!("at most {MAX_HEADERS} headers"));
    }
    for (name, value) in &headers {
        if let Some(issue) = header_problem(name, value) {
            problem(&format!("headers.{name}"), issue);
        }
    }
    let body = match (request.body, request.body_base64) {
        (Some(_), Some(_)) => {
            problem("body", "give body or body_base64, not both".into());
            Vec::new()
        }
        (Some(text), None) => text.into_bytes(),
        (None, Some(encoded)) => STANDARD.decode(encoded.trim()).unwrap_or_else(|error| {
            problem("body_base64", format!("not base64: {error}"));
            Vec::new()
        }),
        (None, None) => Vec::new(),
    };
    if body.len() > MAX_BODY {
        problem("body", format!("at most {MAX_BODY} bytes"));
    }
    let now = Utc::now();
    let latest = now + chrono::Duration::seconds(MAX_DELAY_SECS as i64);
    let run_at = match (request.run_at, request.delay_secs) {
        (Some(_), Some(_)) => {
            problem("run_at", "give run_at or delay_secs, not both".into());
            now
        }
        (Some(at), None) if at > latest => {
            problem("run_at", "at most 30 days ahead".into());
            now
        }
        // A time already past means now (and keeps within what Postgres can store).
        (Some(at), None) => at.max(now),
        (None, Some(delay)) if delay > MAX_DELAY_SECS => {
            problem("delay_secs", format!("at most {MAX_DELAY_SECS}"));
            now
        }
        (None, Some(delay)) => now + chrono::Duration::seconds(delay as i64),
        (None, None) => now,
    };
    if let Some(key) = &request.dedupe_key
        && (key.is_empty() || key.len() > 200 || key.chars().any(char::is_control))
    {
        problem(
            "dedupe_key",
            "1 to 200 characters, none of them control".into(),
        );
    }
    let queue = request.queue.unwrap_or_else(|| "default".into());
    if !queue_name_ok(&queue) {
        problem(
            "queue",
            "1 to 64 of [a-z0-9_-], starting with a letter or digit".into(),
        );
    }
    let max_attempts = request.max_attempts.unwrap_or(8);
    if !(1..=100).contains(&max_attempts) {
        problem("max_attempts", "1 to 100".into());
    }
    let timeout_secs = request.timeout_secs.unwrap_or(30);
    if !(1..=300).contains(&timeout_secs) {
        problem("timeout_secs", "1 to 300".into());
    }
    let retry = request.retry.unwrap_or_default();
    let min = retry.min_backoff.unwrap_or(5.0);
    let max = retry.max_backoff.unwrap_or(3600.0_f64.max(min));
    let in_range = |s: f64| (0.1..=86_400.0).contains(&s);
    if !in_range(min) || !in_range(max) || min > max {
        problem(
            "retry",
            "min_backoff and max_backoff are 0.1 to 86400 seconds, min at most max".into(),
        );
    }
    if fields.len() > before {
        return None;
    }
    Some(CheckedTask {
        url: request.url,
        method,
        headers: Value::Object(headers),
        body,
        run_at,
        dedupe_key: request.dedupe_key,
        queue,
        max_attempts,
        timeout_secs,
        min_backoff_ms: (min * 1000.0) as i64,
        max_backoff_ms: (max * 1000.0) as i64,
    })
}

/// A queue's name: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn queue_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && !name.starts_with(['_', '-'])
}

fn header_problem(name: &str, value: &Value) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if REFUSED.contains(&lower.as_str()) || lower.starts_with("webhook-") {
        return Some("this header may not be set".into());
    }
    if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Some("not a valid header name".into());
    }
    match value.as_str() {
        Some(text) if axum::http::HeaderValue::from_str(text).is_ok() && text.len() <= 8192 => None,
        Some(_) => Some("not a valid header value (no line breaks or control characters)".into()),
        None => Some("a header's value is a string".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_signature_headers_are_refused() {
        for name in [
            "Connection",
            "transfer-encoding",
            "Host",
            "webhook-signature",
        ] {
            assert!(header_problem(name, &json!("x")).is_some(), "{name}");
        }
        assert!(header_problem("x-app", &json!("a\r\nb")).is_some());
        assert!(header_problem("x-app", &json!(1)).is_some());
        assert!(header_problem("bad name", &json!("x")).is_some());
        assert!(header_problem("content-type", &json!("application/json")).is_none());
    }

    #[test]
    fn queue_names_are_plain() {
        assert!(queue_name_ok("default") && queue_name_ok("emails-2"));
        for bad in ["", "Big", "-x", "a b", &"x".repeat(65)] {
            assert!(!queue_name_ok(bad), "{bad}");
        }
    }
}
