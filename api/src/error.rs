//! One error type for every handler: an HTTP status, a stable machine-readable code and a
//! message, rendered as `{"error": {"code", "message"}}`. Internal causes are logged once here
//! and never sent to the client.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use kiln_core::storage::StorageError;
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds a client should wait before retrying (503s, 429s).
    retry_after: Option<u32>,
    /// Per-field problems of a request body, keyed by field path (`to[1]`, `subject`).
    fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// Machine-readable details that belong to the code (`quota` and `limit` of a
    /// `quota_exceeded`), merged into the error object.
    details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            fields: None,
            details: None,
        }
    }

    /// The same error with a machine-readable detail beside its code and message.
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value.into());
        self
    }

    /// 422 with field-level errors.
    pub fn invalid_fields(fields: serde_json::Map<String, serde_json::Value>) -> Self {
        Self {
            fields: Some(fields),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "some fields are invalid; see error.fields",
            )
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this API key lacks the {scope:?} scope"),
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// A dependency is down; the client should retry.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// 429: the client must slow down; it may retry after `retry_after` seconds.
    pub fn too_many(code: &'static str, message: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    /// An unexpected failure: logged with its cause, answered with a generic 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(fields) = self.fields {
            error["fields"] = serde_json::Value::Object(fields);
        }
        for (key, value) in self.details.into_iter().flatten() {
            error[key] = value;
        }
        let body = json!({ "error": error });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<kiln_core::db::job_writes::WriteError> for ApiError {
    fn from(error: kiln_core::db::job_writes::WriteError) -> Self {
        Self::from(error.database_error())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::from(&error)
    }
}

impl From<&sqlx::Error> for ApiError {
    fn from(error: &sqlx::Error) -> Self {
        if database_unavailable(error) {
            tracing::warn!(%error, "postgres unavailable");
            return Self::unavailable(
                "database_unavailable",
                "the database is unavailable; retry later",
            );
        }
        Self::internal(error)
    }
}

/// Whether an error means "Postgres cannot be reached or is going away" (the client may
/// retry: a 503, never a 500) rather than a bug.
fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE classes 08 (connection exception), 53 (insufficient resources) and 57
        // (operator intervention: shutdown, admin termination, cannot connect now).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| ["08", "53", "57"].iter().any(|c| code.starts_with(c))),
        _ => false,
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::NotFound(_) => Self::not_found("file"),
            other => Self::internal(other),
        }
    }
}
