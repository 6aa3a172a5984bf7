//! `/v1/webhooks` (scope `webhooks`): a tenant's endpoints, their secrets and their delivery log.
//! What Kiln sends them is in `kiln_core::db::webhooks` (events) and the worker's `http` job.

pub mod create;
pub mod deliveries;
pub mod manage;

use chrono::{DateTime, Utc};
use kiln_core::db::webhooks::{EVENT_TYPES, Endpoint};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::{auth::Caller, error::ApiError, state::AppState};

/// An endpoint as its tenant sees it: never its secret, except in the answer that made it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    /// Event types it receives, or `*` for all.
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Why Kiln disabled it (410 Gone, failing too long); absent when enabled or disabled by
    /// its tenant.
    pub disabled_reason: Option<String>,
    /// Since when every delivery to it has failed, while that lasts.
    pub failing_since: Option<DateTime<Utc>>,
    /// Until when the secret it had before the last rotation still signs beside the new one.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Made with an admin key: it may also receive `backup.*` events.
    pub admin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EndpointView {
    pub fn of(endpoint: Endpoint) -> Self {
        let overlap = endpoint
            .previous_secret_until
            .filter(|until| *until > Utc::now());
        Self {
            id: endpoint.id,
            tenant: endpoint.tenant,
            url: endpoint.url,
            events: endpoint.events,
            description: endpoint.description,
            enabled: endpoint.enabled,
            disabled_reason: endpoint.disabled_reason,
            failing_since: endpoint.failing_since,
            previous_secret_expires_at: overlap,
            admin: endpoint.admin,
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// An endpoint with how its deliveries of the last day went.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointListed {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// Deliveries of the last 24 h that ended (succeeded or failed for good).
    pub finished_24h: i64,
    /// Of those, how many succeeded.
    pub succeeded_24h: i64,
}

/// Endpoints with their last day's deliveries counted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointListed>,
}

impl EndpointList {
    /// Counts the last day's deliveries of `endpoints`.
    pub async fn of(state: &AppState, endpoints: Vec<Endpoint>) -> Result<Self, ApiError> {
        let ids: Vec<Uuid> = endpoints.iter().map(|e| e.id).collect();
        let counts = kiln_core::db::webhooks::success_counts(&state.db, &ids).await?;
        let endpoints = endpoints
            .into_iter()
            .map(|endpoint| {
                let (finished, succeeded) = counts
                    .iter()
                    .find(|(id, ..)| *id == endpoint.id)
                    .map_or((0, 0), |(_, f, s)| (*f, *s));
                EndpointListed {
                    endpoint: EndpointView::of(endpoint),
                    finished_24h: finished,
                    succeeded_24h: succeeded,
                }
            })
            .collect();
        Ok(Self { endpoints })
    }
}

/// The most endpoints a tenant may have.
const MAX_ENDPOINTS: usize = 50;
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 500;

/// What is wrong with a URL Kiln is to call (a webhook endpoint's, a task's), if anything:
/// its length, control characters, its scheme, or a literal address a delivery may not reach.
pub(crate) fn url_problem(state: &AppState, url: &str) -> Option<String> {
    if url.len() > MAX_URL {
        return Some(format!("at most {MAX_URL} characters"));
    }
    if url.chars().any(char::is_control) {
        return Some("no control characters".into());
    }
    match url::Url::parse(url) {
        Err(error) => Some(format!("not a URL: {error}")),
        Ok(parsed) => {
            let allow = &state.config.webhooks.allow_nets;
            kiln_core::delivery::reach::check_url(&parsed, allow).err()
        }
    }
}

/// Checks an endpoint's fields; each problem is named by its field (422 `validation_failed`).
struct Checks<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    fields: Map<String, Value>,
}

impl<'a> Checks<'a> {
    fn new(state: &'a AppState, caller: &'a Caller) -> Self {
        Self {
            state,
            caller,
            fields: Map::new(),
        }
    }

    fn url(&mut self, url: &str) {
        if let Some(problem) = url_problem(self.state, url) {
            self.fields.insert("url".into(), json!(problem));
        }
    }

    fn events(&mut self, events: &[String]) {
        let problem = if events.is_empty() || events.len() > EVENT_TYPES.len() + 1 {
            Some("one to nine event types, or [\"*\"]".to_owned())
        } else {
            events.iter().find_map(|event| {
                let known = EVENT_TYPES.iter().find(|(name, _)| name == event);
                match known {
                    _ if event == "*" => None,
                    None => Some(format!(
                        "unknown event type {event:?}; known: * and {}",
                        EVENT_TYPES.map(|(name, _)| name).join(", ")
                    )),
                    Some((name, true)) if !self.caller.has(crate::auth::scope::ADMIN) => {
                        Some(format!("{name} is for endpoints made with an admin key"))
                    }
                    Some(_) => None,
                }
            })
        };
        if let Some(problem) = problem {
            self.fields.insert("events".into(), json!(problem));
        }
    }

    fn description(&mut self, description: &str) {
        if description.len() > MAX_DESCRIPTION || description.contains('\0') {
            let problem = format!("at most {MAX_DESCRIPTION} characters, none of them NUL");
            self.fields.insert("description".into(), json!(problem));
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_fields(self.fields))
        }
    }
}

/// The caller's endpoint `id`, or 404.
async fn owned(state: &AppState, caller: &Caller, id: Uuid) -> Result<Endpoint, ApiError> {
    kiln_core::db::webhooks::find_endpoint_for_tenant(&state.db, id, &caller.tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))
}

/// The caller's endpoint `id`, to change: one made with an admin key (it receives the
/// operators' `backup.*` events) is changed only with an admin key, so a key with the
/// `webhooks` scope alone cannot point those events at itself.
async fn owned_to_change(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<Endpoint, ApiError> {
    let endpoint = owned(state, caller, id).await?;
    if endpoint.admin {
        caller.require(crate::auth::scope::ADMIN)?;
    }
    Ok(endpoint)
}
