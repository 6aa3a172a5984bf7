//! Path and query extractors whose rejections are [`ApiError`]s, so a malformed URL gets the
//! same JSON error body as every other failure instead of axum's plain-text 400.

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, Path, Query, Request,
        path::ErrorKind,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// [`Path`], rejecting an unparsable segment with a JSON 404.
///
/// Every path parameter of the API is an identifier or a file name: a segment that does not
/// parse (an id that is not a UUID) names nothing that could exist, so it is "not found"
/// rather than a malformed request.
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_error(rejection)),
        }
    }
}

/// Maps a path rejection to an error. axum answers 5xx only when the route and the extracted
/// type disagree: that is our bug, not the client's, so it stays an internal error.
fn path_error(rejection: PathRejection) -> ApiError {
    if rejection.status().is_server_error() {
        return ApiError::internal(rejection.body_text());
    }
    let segment = match &rejection {
        PathRejection::FailedToDeserializePathParams(failed) => bad_segment(failed.kind()),
        _ => None,
    };
    let message = match segment {
        Some(segment) => format!("{segment} not found: it is not a valid identifier"),
        None => "not found: the URL does not name a valid resource".to_owned(),
    };
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

/// The offending segment, as `key "value"` when axum knows both.
fn bad_segment(kind: &ErrorKind) -> Option<String> {
    match kind {
        ErrorKind::ParseErrorAtKey { key, value, .. }
        | ErrorKind::DeserializeError { key, value, .. } => Some(format!("{key} {value:?}")),
        ErrorKind::ParseErrorAtIndex { value, .. } | ErrorKind::ParseError { value, .. } => {
            Some(format!("{value:?}"))
        }
        ErrorKind::InvalidUtf8InPathParam { key } => Some(format!("{key} (invalid UTF-8)")),
        _ => None,
    }
}

/// [`Query`], rejecting an unparsable query string with a JSON 422 `invalid_filter`: query
/// strings only ever carry list and bulk-action filters.
#[derive(Debug, Clone, Copy)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_error(&rejection)),
        }
    }
}

/// Maps a query rejection to an error, keeping axum's explanation (which parameter, why).
fn query_error(rejection: &QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_filter",
        rejection.body_text(),
    )
}

/// [`Json`], rejecting a body that is not the expected JSON with 422 `invalid_body` (or 413
/// past the route's body limit).
#[derive(Debug, Clone, Copy)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_error(&rejection)),
        }
    }
}

/// Maps a JSON rejection to an error, keeping serde's explanation.
pub fn json_error(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        );
    }
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
        rejection.body_text(),
    )
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::Request, routing::get};
    use http_body_util::BodyExt;
    use serde::Deserialize;
    use serde_json::Value;
    use tower::ServiceExt;
    use uuid::Uuid;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Filter {
        limit: Option<i64>,
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/x/{id}",
                get(|ApiPath(id): ApiPath<Uuid>| async move { id.to_string() }),
            )
            .route(
                "/q",
                get(|ApiQuery(f): ApiQuery<Filter>| async move { format!("{:?}", f.limit) }),
            )
    }

    /// The status and body of `GET uri`.
    async fn get_uri(uri: &str) -> (StatusCode, Vec<u8>) {
        let request = Request::get(uri).body(Body::empty()).expect("request");
        let response = app().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = response.into_body().collect().await.expect("body");
        (status, body.to_bytes().to_vec())
    }

    fn error_of(body: &[u8]) -> Value {
        let body: Value = serde_json::from_slice(body).expect("a JSON body");
        body["error"].clone()
    }

    #[tokio::test]
    async fn a_path_id_that_is_not_a_uuid_is_a_json_404_naming_it() {
        let id = Uuid::now_v7();
        let (status, body) = get_uri(&format!("/x/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, id.to_string().as_bytes());

        let (status, body) = get_uri("/x/abc").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let error = error_of(&body);
        assert_eq!(error["code"], "not_found");
        let message = error["message"].as_str().expect("a message");
        assert!(message.contains("\"abc\""), "{message}");
    }

    #[tokio::test]
    async fn a_bad_query_parameter_is_a_json_422() {
        let (status, body) = get_uri("/q?limit=5").await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"Some(5)"[..]));

        let (status, body) = get_uri("/q?limit=abc").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let error = error_of(&body);
        assert_eq!(error["code"], "invalid_filter");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("limit"))
        );
    }
}
