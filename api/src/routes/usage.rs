//! Usage per tenant and UTC day: `GET /v1/usage?from=&to=` for the caller's tenant (any key of
//! it) and `GET /v1/admin/usage?from=&to=` for every tenant (admin scope). Dates are
//! `YYYY-MM-DD`, inclusive; the default is the last 30 days, the longest range 366.

use axum::{Json, extract::State, http::StatusCode};
use chrono::{Days, NaiveDate, Utc};
use kiln_core::db::{self, usage::UsageDay};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::{Caller, scope},
    error::ApiError,
    extract::ApiQuery,
    state::AppState,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Range {
    /// First day (`YYYY-MM-DD`, UTC); 29 days before `to` by default.
    from: Option<NaiveDate>,
    /// Last day, inclusive; today by default.
    to: Option<NaiveDate>,
}

const MAX_DAYS: u64 = 366;

impl Range {
    fn resolve(&self) -> Result<(NaiveDate, NaiveDate), ApiError> {
        let today = Utc::now().date_naive();
        let to = self.to.unwrap_or(today);
        let from = match self.from {
            Some(from) => from,
            None => to.checked_sub_days(Days::new(29)).unwrap_or(to),
        };
        let invalid = |message: &str| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_filter", message)
        };
        if from > to {
            return Err(invalid("from must not be after to"));
        }
        if (to - from).num_days() >= MAX_DAYS as i64 {
            return Err(invalid("a range may span at most 366 days"));
        }
        Ok((from, to))
    }
}

/// One day's numbers as the API shows them.
fn day_view(day: &UsageDay) -> Value {
    json!({
        "day": day.day,
        "uploads": day.uploads,
        "upload_bytes": day.upload_bytes,
        "variant_bytes": day.variant_bytes,
        "stored_bytes": day.upload_bytes + day.variant_bytes,
        "processing_seconds": day.processing_ms as f64 / 1000.0,
        "emails_accepted": day.emails_accepted,
        "emails_sent": day.emails_sent,
    })
}

/// The sums over `days`.
fn totals(days: &[&UsageDay]) -> Value {
    let sum = |f: fn(&UsageDay) -> i64| days.iter().map(|d| f(d)).sum::<i64>();
    json!({
        "uploads": sum(|d| d.uploads),
        "upload_bytes": sum(|d| d.upload_bytes),
        "variant_bytes": sum(|d| d.variant_bytes),
        "stored_bytes": sum(|d| d.upload_bytes + d.variant_bytes),
        "processing_seconds": sum(|d| d.processing_ms) as f64 / 1000.0,
        "emails_accepted": sum(|d| d.emails_accepted),
        "emails_sent": sum(|d| d.emails_sent),
    })
}

/// The caller's tenant's usage.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", security(("bearer" = [])), params(Range),
    responses(
        (status = 200, description = "The tenant's usage per UTC day", body = crate::openapi::schemas::TenantUsage),
        (status = 422, description = "`invalid_filter`: a bad date, from after to, or more than 366 days", body = crate::openapi::ErrorBody),
    ))]
pub async fn tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Json<Value>, ApiError> {
    let (from, to) = range.resolve()?;
    let days = db::usage::range(&state.db, Some(&caller.tenant), from, to).await?;
    let all: Vec<&UsageDay> = days.iter().collect();
    Ok(Json(json!({
        "tenant": caller.tenant,
        "from": from,
        "to": to,
        "totals": totals(&all),
        "days": days.iter().map(day_view).collect::<Vec<_>>(),
    })))
}

/// Every tenant's usage, busiest (by stored bytes) first.
#[utoipa::path(get, path = "/v1/admin/usage", tag = "admin", security(("bearer" = [])), params(Range),
    responses(
        (status = 200, description = "Every tenant's usage per UTC day", body = crate::openapi::schemas::AllUsage),
        (status = 403, description = "`forbidden`: the key lacks the admin scope", body = crate::openapi::ErrorBody),
        (status = 422, description = "`invalid_filter`: a bad date, from after to, or more than 366 days", body = crate::openapi::ErrorBody),
    ))]
pub async fn all(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(range): ApiQuery<Range>,
) -> Result<Json<Value>, ApiError> {
    caller.require(scope::ADMIN)?;
    let (from, to) = range.resolve()?;
    let days = db::usage::range(&state.db, None, from, to).await?;
    Ok(Json(
        json!({ "from": from, "to": to, "tenants": by_tenant(&days) }),
    ))
}

/// Days grouped by tenant (they come sorted by tenant), with each tenant's totals.
pub fn by_tenant(days: &[UsageDay]) -> Vec<Value> {
    let mut tenants: Vec<(i64, Value)> = days
        .chunk_by(|a, b| a.tenant == b.tenant)
        .map(|group| {
            let all: Vec<&UsageDay> = group.iter().collect();
            let stored: i64 = group.iter().map(|d| d.upload_bytes + d.variant_bytes).sum();
            let view = json!({
                "tenant": group[0].tenant,
                "totals": totals(&all),
                "days": group.iter().map(day_view).collect::<Vec<_>>(),
            });
            (stored, view)
        })
        .collect();
    tenants.sort_by_key(|t| std::cmp::Reverse(t.0));
    tenants.into_iter().map(|(_, view)| view).collect()
}

/// The dashboard's panel: the last 14 days summed over tenants, and the busiest tenants.
pub async fn dashboard_panel(state: &AppState) -> Result<Value, ApiError> {
    let to = Utc::now().date_naive();
    let from = to.checked_sub_days(Days::new(13)).unwrap_or(to);
    let days = db::usage::range(&state.db, None, from, to).await?;
    let mut daily = Vec::new();
    let mut day = from;
    while day <= to {
        let of_day: Vec<&UsageDay> = days.iter().filter(|d| d.day == day).collect();
        let mut view = totals(&of_day);
        view["day"] = json!(day);
        daily.push(view);
        day = day
            .checked_add_days(Days::new(1))
            .unwrap_or(to + Days::new(1));
    }
    let mut tenants = by_tenant(&days);
    tenants.truncate(10);
    for tenant in &mut tenants {
        if let Some(tenant) = tenant.as_object_mut() {
            tenant.remove("days");
        }
    }
    Ok(json!({ "daily": daily, "tenants": tenants }))
}
