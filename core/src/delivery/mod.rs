//! The signed HTTP delivery shared by webhooks (and, next, the app's own HTTP tasks): one POST,
//! signed per Standard Webhooks 1.0 ([`signing`]), to an address a delivery may reach
//! ([`reach`]), with no redirects followed, a time limit, and only the first KiB of the answer
//! read. [`Answer`] classifies what came back for the retry decision.

pub mod reach;
pub mod signing;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
pub use reqwest::Method;
use reqwest::{StatusCode, header::HeaderMap};

/// How much of an answer's body is read and kept for the delivery log.
pub const KEPT_BODY_BYTES: usize = 1024;
/// The longest `Retry-After` honoured: a receiver cannot park a delivery for ever.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The HTTP client every delivery of a process goes through (a connection pool per host).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    allow: Arc<Vec<ipnet::IpNet>>,
}

/// One request to send.
pub struct Request<'a> {
    pub method: reqwest::Method,
    pub url: &'a str,
    /// The `webhook-id`: the same on every attempt of a delivery.
    pub id: &'a str,
    /// The secrets to sign with (two during a rotation's overlap).
    pub secrets: &'a [&'a str],
    /// Headers besides the signature's (an HTTP task's own; a webhook's content type).
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// This request's own time limit, within the client's.
    pub timeout: Option<Duration>,
}

impl<'a> Request<'a> {
    /// A webhook delivery: a JSON body POSTed.
    pub fn webhook(url: &'a str, id: &'a str, secrets: &'a [&'a str], body: &'a str) -> Self {
        static JSON: std::sync::LazyLock<Vec<(String, String)>> = std::sync::LazyLock::new(|| {
            vec![("content-type".to_owned(), "application/json".to_owned())]
        });
        Self {
            method: reqwest::Method::POST,
            url,
            id,
            secrets,
            headers: &JSON,
            body: body.as_bytes(),
            timeout: None,
        }
    }
}

/// What one attempt brought back.
#[derive(Debug)]
pub struct Attempt {
    pub answer: Answer,
    /// The status code, when an answer came at all.
    pub status: Option<u16>,
    /// The first [`KEPT_BODY_BYTES`] of the answer (lossy UTF-8).
    pub body_head: String,
    pub latency: Duration,
    /// What went wrong, for the log; `None` on success.
    pub error: Option<String>,
}

/// How the attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Delivered,
    /// 410 Gone: the endpoint asks never to be called again.
    Gone,
    /// 429, 5xx, a redirect (not followed), a time-out or a network error: try again, not
    /// before `after` when the receiver said so (`Retry-After`).
    Retry { after: Option<Duration> },
    /// Another 4xx, or an address a delivery may not reach: trying again would not help.
    Final,
}

impl Client {
    /// A client whose requests take at most `timeout` each and reach only public addresses or
    /// those in `allow`.
    pub fn new(timeout: Duration, allow: Vec<ipnet::IpNet>) -> Result<Self, reqwest::Error> {
        let resolver = reach::FilteringResolver {
            allow: allow.clone(),
        };
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("Kiln-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            allow: Arc::new(allow),
        })
    }

    /// Sends one signed attempt; never fails, the outcome says what happened.
    pub async fn send(&self, request: &Request<'_>) -> Attempt {
        let started = std::time::Instant::now();
        let refused = |error: String| Attempt {
            answer: Answer::Final,
            status: None,
            body_head: String::new(),
            latency: started.elapsed(),
            error: Some(error),
        };
        let url = match url::Url::parse(request.url) {
            Ok(url) => url,
            Err(error) => return refused(format!("the URL is invalid: {error}")),
        };
        if let Err(error) = reach::check_url(&url, &self.allow) {
            return refused(error);
        }
        // Signed now, not when the delivery was made: a receiver rejects old timestamps.
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signing::signature(request.secrets, request.id, timestamp, request.body);
        let mut builder = self.http.request(request.method.clone(), url);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        if let Some(timeout) = request.timeout {
            builder = builder.timeout(timeout);
        }
        let sent = builder
            .header("webhook-id", request.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(request.body.to_owned())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let unreachable = source_is::<reach::Unreachable>(&error);
                return Attempt {
                    answer: if unreachable {
                        Answer::Final
                    } else {
                        Answer::Retry { after: None }
                    },
                    status: None,
                    body_head: String::new(),
                    latency: started.elapsed(),
                    error: Some(describe(&error)),
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let (body_head, read_error) = read_head(response).await;
        let answer = classify(status, retry_after);
        let error = match answer {
            Answer::Delivered => None,
            _ => Some(match read_error {
                Some(read) => format!("answered {status}; reading its body: {read}"),
                None => format!("answered {status}"),
            }),
        };
        Attempt {
            answer,
            status: Some(status.as_u16()),
            body_head,
            latency: started.elapsed(),
            error,
        }
    }
}

/// What a status code means for the delivery.
pub fn classify(status: StatusCode, retry_after: Option<Duration>) -> Answer {
    match status.as_u16() {
        200..=299 => Answer::Delivered,
        410 => Answer::Gone,
        429 | 500..=599 | 300..=399 | 408 => Answer::Retry { after: retry_after },
        _ => Answer::Final,
    }
}

/// `Retry-After` as seconds or an HTTP date, capped at a day; `None` when absent or unreadable.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Reads at most [`KEPT_BODY_BYTES`] of the body, then stops: a receiver cannot make a worker
/// read (or keep) more than that.
async fn read_head(response: reqwest::Response) -> (String, Option<String>) {
    let mut head = Vec::with_capacity(KEPT_BODY_BYTES);
    let mut stream = response.bytes_stream();
    while head.len() < KEPT_BODY_BYTES {
        match stream.next().await {
            None => break,
            Some(Ok(chunk)) => {
                let room = KEPT_BODY_BYTES - head.len();
                head.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Some(Err(error)) => return (lossy(&head), Some(describe(&error))),
        }
    }
    (lossy(&head), None)
}

/// Text a Postgres `text` column takes: lossy UTF-8 without NULs.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{fffd}")
}

/// Whether `E` is somewhere in the error's chain of sources.
fn source_is<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<E>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// The error with its sources, which is where reqwest says what actually failed.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_the_retry_rules_say() {
        let code = |c: u16| StatusCode::from_u16(c).expect("code");
        assert_eq!(classify(code(200), None), Answer::Delivered);
        assert_eq!(classify(code(204), None), Answer::Delivered);
        assert_eq!(classify(code(410), None), Answer::Gone);
        let later = Some(Duration::from_secs(3));
        assert_eq!(classify(code(429), later), Answer::Retry { after: later });
        assert_eq!(classify(code(503), None), Answer::Retry { after: None });
        assert_eq!(classify(code(302), None), Answer::Retry { after: None });
        assert_eq!(classify(code(400), None), Answer::Final);
        assert_eq!(classify(code(404), None), Answer::Final);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let headers = |value: &str| {
            let mut map = HeaderMap::new();
            map.insert(reqwest::header::RETRY_AFTER, value.parse().expect("value"));
            map
        };
        assert_eq!(retry_after(&headers("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers("999999999")), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon")), None);
    }
}
