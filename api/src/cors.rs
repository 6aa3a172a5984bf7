//! CORS for the pages of `KILN_CORS_ORIGINS` (tower-http's layer): what a browser needs to
//! call the API directly, tus uploads above all. Off when no origin is configured.
//!
//! With CORS on, tower-http answers every `OPTIONS` request as a preflight, so tus discovery
//! (`OPTIONS /v1/uploads/tus/`) gets the CORS answer instead; tus clients do not need it.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The CORS layer for `origins` (`*` for any), or none.
pub fn layer(origins: &[String]) -> tower::util::Either<CorsLayer, tower::layer::util::Identity> {
    let Some(layer) = (!origins.is_empty()).then(|| {
        let allow_origin = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                origins
                    .iter()
                    .filter_map(|origin| HeaderValue::try_from(origin.as_str()).ok()),
            )
        };
        let name = HeaderName::from_static;
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                header::IF_RANGE,
                header::RANGE,
                name("tus-resumable"),
                name("upload-length"),
                name("upload-metadata"),
                name("upload-offset"),
                name("upload-defer-length"),
                name("upload-concat"),
                name("x-http-method-override"),
                name("x-requested-with"),
            ])
            .expose_headers([
                header::LOCATION,
                header::ETAG,
                header::CONTENT_RANGE,
                name("tus-resumable"),
                name("tus-version"),
                name("tus-extension"),
                name("tus-max-size"),
                name("upload-offset"),
                name("upload-length"),
                name("upload-metadata"),
                name("upload-expires"),
                name("kiln-media-id"),
                name("ratelimit"),
                name("ratelimit-policy"),
                name("retry-after"),
            ])
            .max_age(Duration::from_secs(86_400))
    }) else {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    };
    tower::util::Either::Left(layer)
}
