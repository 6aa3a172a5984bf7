//! `/admin`: the operators' dashboard. A server-rendered page behind an admin login (see
//! [`crate::session`]); its script polls `/admin/data` and acts through the same
//! `/v1/admin/...` endpoints an API client would use, authenticated by the session cookie and
//! its CSRF token.

mod data;

use axum::{
    Form,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use kiln_core::db;
use serde::Deserialize;

use crate::{
    auth::{hash_key, scope},
    error::ApiError,
    limits::client::ClientAddress,
    session,
    state::AppState,
};

pub use data::data;

const DASHBOARD_HTML: &str = include_str!("../../../assets/dashboard.html");
const LOGIN_HTML: &str = include_str!("../../../assets/login.html");

/// The dashboard for a logged-in admin, the login form for anyone else.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    match session::from_headers(&headers, &state).await? {
        Some(session) if session.key.scopes.iter().any(|s| s == scope::ADMIN) => {
            // The token is 64 hex characters: nothing to escape.
            let page = DASHBOARD_HTML
                .replace("{{csrf_token}}", &session.csrf_token)
                .replace("{{key_name}}", &html_escape(&session.key.name));
            Ok(no_store(Html(page).into_response()))
        }
        _ => Ok(login_page(StatusCode::OK, "")),
    }
}

/// The login form's body.
#[derive(Debug, Deserialize)]
pub struct Login {
    key: String,
}

/// Trades an admin key for a session cookie, then back to the dashboard.
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    form: Result<Form<Login>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    crate::limits::refuse_if_failing(&state, address)?;
    let Ok(Form(login)) = form else {
        return Ok(login_page(
            StatusCode::BAD_REQUEST,
            "Enter an admin API key.",
        ));
    };
    let key = db::api_keys::find_active_by_hash(&state.db, &hash_key(login.key.trim())).await?;
    let Some(key) = key else {
        tracing::warn!("dashboard login with an unknown or revoked key");
        crate::limits::count_failure(&state, address);
        return Ok(login_page(
            StatusCode::UNAUTHORIZED,
            "Unknown or revoked API key.",
        ));
    };
    if !key.scopes.iter().any(|s| s == scope::ADMIN) {
        return Ok(login_page(
            StatusCode::FORBIDDEN,
            "This key lacks the admin scope.",
        ));
    }
    let cookie = session::create(&state, key.id).await?;
    tracing::info!(key = key.name, "dashboard login");
    let mut response = Redirect::to("/admin").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Ends the session (a form post from the page, so it carries the CSRF token as a field).
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Result<Response, ApiError> {
    if let Some(session) = session::from_headers(&headers, &state).await?
        && session.csrf_token == form.csrf_token
    {
        session::end(&headers, &state).await?;
    }
    let mut response = Redirect::to("/admin").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear());
    Ok(response)
}

/// The logout form's body.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf_token: String,
}

fn login_page(status: StatusCode, error: &str) -> Response {
    let page = LOGIN_HTML.replace("{{error}}", &html_escape(error));
    no_store((status, Html(page)).into_response())
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
            .parse()
            .expect("static"),
    );
    headers.insert(header::X_FRAME_OPTIONS, "DENY".parse().expect("static"));
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page's script, style and the vendored chart library (uPlot, MIT).
pub async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "dashboard.js" => (
            include_str!("../../../assets/dashboard.js"),
            "text/javascript",
        ),
        "dashboard.css" => (include_str!("../../../assets/dashboard.css"), "text/css"),
        "uPlot.iife.min.js" => (
            include_str!("../../../assets/vendor/uplot/uPlot.iife.min.js"),
            "text/javascript",
        ),
        "uPlot.min.css" => (
            include_str!("../../../assets/vendor/uplot/uPlot.min.css"),
            "text/css",
        ),
        _ => return ApiError::not_found("asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
