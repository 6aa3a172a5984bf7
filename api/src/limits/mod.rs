//! What one client may take: request rates per key and scope, failed authentications per
//! address, uploads in flight. The configuration is `kiln_core::config::Limits`.
//!
//! Every answer to a key-authenticated request carries the `RateLimit-Policy` and `RateLimit`
//! fields of draft-ietf-httpapi-ratelimit-headers-10 (structured fields):
//! `RateLimit-Policy: "media";q=200;w=2` (a burst of 200, refilled over 2 s) and
//! `RateLimit: "media";r=150;t=1` (150 left, full again in 1 s).

pub mod client;
pub mod rate;
pub mod uploads;

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::Request,
    http::{HeaderValue, request::Parts},
    middleware::Next,
    response::Response,
};
use kiln_core::config::{Rate, RateLimits};

use crate::{error::ApiError, state::AppState};
use rate::Decision;

/// Where the authentication step leaves its rate decision for the answer's headers.
#[derive(Clone, Default)]
struct DecisionSlot(Arc<Mutex<Option<Decision>>>);

/// Adds the rate-limit fields to the answer of a request whose key was checked.
pub async fn headers(mut request: Request, next: Next) -> Response {
    let slot = DecisionSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let decision = *slot.0.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(decision) = decision {
        let (policy, current) = fields(&decision);
        let headers = response.headers_mut();
        headers.insert("ratelimit-policy", policy);
        headers.insert("ratelimit", current);
    }
    response
}

/// The `RateLimit-Policy` and `RateLimit` values of a decision.
fn fields(decision: &Decision) -> (HeaderValue, HeaderValue) {
    let window = decision.rate.window().as_secs_f64().ceil().max(1.0);
    let reset = decision.reset.as_secs_f64().ceil();
    let policy = format!(
        "\"{}\";q={};w={window}",
        decision.policy, decision.rate.burst
    );
    let current = format!("\"{}\";r={};t={reset}", decision.policy, decision.remaining);
    // Built from a fixed name and numbers: always valid header values.
    (
        HeaderValue::try_from(policy).unwrap_or(HeaderValue::from_static("")),
        HeaderValue::try_from(current).unwrap_or(HeaderValue::from_static("")),
    )
}

/// The policy a route's requests count against: its scope.
fn policy(path: &str, rates: &RateLimits) -> (&'static str, Option<Rate>) {
    if path.starts_with("/v1/emails") {
        ("email", rates.email)
    } else if path.starts_with("/v1/admin") || path.starts_with("/admin") {
        ("admin", rates.admin)
    } else if path.starts_with("/v1/webhooks") {
        ("webhooks", rates.webhooks)
    } else if path.starts_with("/v1/task") || path.starts_with("/v1/schedules") {
        ("tasks", rates.tasks)
    } else {
        ("media", rates.media)
    }
}

/// Takes one request from the key's bucket for this route, or refuses with 429.
pub fn admit_key(state: &AppState, parts: &Parts, key_id: uuid::Uuid) -> Result<(), ApiError> {
    let (policy, rate) = policy(parts.uri.path(), &state.config.limits.rates);
    let Some(rate) = rate else {
        return Ok(());
    };
    let decision = state.rates.take(policy, format!("{policy}:{key_id}"), rate);
    if let Some(slot) = parts.extensions.get::<DecisionSlot>() {
        *slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(decision);
    }
    if decision.allowed {
        return Ok(());
    }
    metrics::counter!("kiln_rate_limited_total", "policy" => policy).increment(1);
    Err(ApiError::too_many(
        "rate_limited",
        format!("this key is over its {policy:?} rate limit; see the RateLimit header"),
        retry_seconds(&decision),
    ))
}

/// Refuses a client address that has failed to authenticate too often, before it tries again.
pub fn refuse_if_failing(state: &AppState, address: Option<IpAddr>) -> Result<(), ApiError> {
    let Some((key, rate)) = failure_bucket(state, address) else {
        return Ok(());
    };
    let decision = state.rates.peek("auth", key, rate);
    if decision.allowed {
        return Ok(());
    }
    metrics::counter!("kiln_rate_limited_total", "policy" => "auth").increment(1);
    Err(ApiError::too_many(
        "rate_limited",
        "too many failed authentications from this address (KILN_AUTH_FAILURE_LIMIT)",
        retry_seconds(&decision),
    ))
}

/// Counts a failed authentication against the client's address.
pub fn count_failure(state: &AppState, address: Option<IpAddr>) {
    if let Some((key, rate)) = failure_bucket(state, address) {
        metrics::counter!("kiln_auth_failures_total").increment(1);
        state.rates.take("auth", key, rate);
    }
}

fn failure_bucket(state: &AppState, address: Option<IpAddr>) -> Option<(String, Rate)> {
    let rate = state.config.limits.auth_failures?;
    Some((format!("auth:{}", address?), rate))
}

/// 429 `quota_exceeded`: the tenant has used its daily `quota` (`limit`); it renews at
/// midnight UTC, which `Retry-After` points at.
pub fn quota_exceeded(quota: &str, limit: u64) -> ApiError {
    metrics::counter!("kiln_quota_exceeded_total", "quota" => quota.to_owned()).increment(1);
    let now = chrono::Utc::now();
    let midnight = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map_or(now, |t| t.and_utc());
    let wait = u32::try_from((midnight - now).num_seconds()).unwrap_or(u32::MAX);
    ApiError::too_many(
        "quota_exceeded",
        format!("this tenant has used its daily {quota} quota ({limit}); it renews at 00:00 UTC"),
        wait,
    )
    .with_detail("quota", quota)
    .with_detail("limit", limit)
}

fn retry_seconds(decision: &Decision) -> u32 {
    u32::try_from(decision.retry_after.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_fields_are_structured_fields_of_the_current_draft() {
        let decision = Decision {
            policy: "media",
            rate: Rate {
                interval: Duration::from_millis(10),
                burst: 200,
            },
            allowed: true,
            remaining: 150,
            reset: Duration::from_millis(500),
            retry_after: Duration::ZERO,
        };
        let (policy, current) = fields(&decision);
        assert_eq!(policy, "\"media\";q=200;w=2");
        assert_eq!(current, "\"media\";r=150;t=1");
    }

    #[test]
    fn routes_count_against_their_scope() {
        let rate = kiln_core::config::parse_rate("1/s").expect("valid");
        let rates = RateLimits {
            media: rate,
            email: None,
            admin: rate,
            webhooks: rate,
            tasks: rate,
        };
        assert_eq!(policy("/v1/emails", &rates).0, "email");
        assert!(policy("/v1/emails", &rates).1.is_none());
        assert_eq!(policy("/v1/admin/jobs", &rates).0, "admin");
        assert_eq!(policy("/v1/media/x", &rates).0, "media");
        assert_eq!(policy("/v1/jobs/x", &rates).0, "media");
        assert_eq!(policy("/v1/webhooks/x", &rates).0, "webhooks");
        assert_eq!(policy("/v1/task-queues/x", &rates).0, "tasks");
    }
}
