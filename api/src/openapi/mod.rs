//! The OpenAPI 3.1 document (`GET /v1/openapi.json`, and the reference page at `/docs`),
//! generated from the handlers' `#[utoipa::path]` annotations. The router registers every
//! documented route through `utoipa_axum`, so a route cannot be served without being in the
//! document. What every authenticated operation shares (the bearer scheme, the `RateLimit`
//! fields, 401/408/429/503) is added here once, by [`finish`].

pub mod schemas;

use utoipa::{
    Modify, OpenApi,
    openapi::{
        RefOr,
        header::HeaderBuilder,
        response::{Response, ResponseBuilder},
        schema::{ObjectBuilder, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

pub use schemas::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kiln",
        description = "A self-hosted job backend for apps that take media uploads: images \
                       resized into variants, email, and the operators' admin API. Every error \
                       is `{\"error\": {\"code\", \"message\"}}` with a stable code; see each \
                       response's description for the codes it may carry. Any path answers a \
                       method it does not take with 405 `method_not_allowed` (and `Allow`), and \
                       any operation may answer 500 `internal`, whose cause is only in the log.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "health", description = "Liveness and readiness (no key)"),
        (name = "media", description = "Uploads, media and their variants (scope media)"),
        (name = "jobs", description = "Job status (any scope)"),
        (name = "emails", description = "Email sent by the workers (scope email)"),
        (name = "webhooks", description = "Endpoints Kiln calls back with signed events (Standard Webhooks 1.0), and their delivery log (scope webhooks)"),
        (name = "tasks", description = "The app's own HTTP tasks, sent signed, delayed, deduplicated, retried and within their queue's limits (scope tasks)"),
        (name = "usage", description = "Usage per tenant and day"),
        (name = "admin", description = "Operators' actions (scope admin; every tenant)"),
    ),
)]
pub struct ApiDoc;

/// Adds what every operation shares, once the routes have added their paths.
pub fn finish(openapi: &mut utoipa::openapi::OpenApi) {
    Shared.modify(openapi);
}

/// The parts every operation shares.
struct Shared;

const RATE_LIMIT_POLICY: &str = "RateLimit-Policy";
const RATE_LIMIT: &str = "RateLimit";

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kiln_<64 hex>")
                    .description(Some("An API key from `kiln-api keys create`"))
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
                &mut item.head,
                &mut item.options,
            ];
            for operation in operations.into_iter().flatten() {
                let authenticated = operation.security.is_some();
                let responses = &mut operation.responses.responses;
                responses.entry("500".into()).or_insert_with(|| {
                    error(
                        "`internal`: an unexpected failure; the cause is in the server's log",
                        false,
                    )
                });
                responses
                    .entry("408".into())
                    .or_insert_with(|| error("`request_timeout`: the request (its body included) took longer than KILN_REQUEST_TIMEOUT_SECS; for an upload, `upload_timeout`: it came slower than the minimum pace", false));
                if authenticated {
                    responses.entry("401".into()).or_insert_with(|| {
                        error(
                            "`unauthorized`: no key, or an unknown or revoked one",
                            false,
                        )
                    });
                    responses.entry("429".into()).or_insert_with(|| {
                        error(
                            "`rate_limited`: over this key's rate for the scope, or too many \
                             failed authentications from this address",
                            true,
                        )
                    });
                    responses.entry("503".into()).or_insert_with(|| {
                        error(
                            "`database_unavailable`: Postgres is down; retry after Retry-After",
                            true,
                        )
                    });
                    for response in responses.values_mut() {
                        if let RefOr::T(response) = response {
                            add_rate_limit_headers(response);
                        }
                    }
                }
            }
        }
    }
}

/// An error response with the shared body (and `Retry-After` when it has one).
pub fn error(description: &str, retry_after: bool) -> RefOr<Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        utoipa::openapi::ContentBuilder::new()
            .schema(Some(schemas::error_schema()))
            .build(),
    );
    if retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    RefOr::T(response.build())
}

/// The draft-ietf-httpapi-ratelimit-headers-10 fields every authenticated answer carries.
fn add_rate_limit_headers(response: &mut Response) {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    response
        .headers
        .entry(RATE_LIMIT_POLICY.into())
        .or_insert_with(|| {
            HeaderBuilder::new()
                .schema(string())
                .description(Some(
                    "The key's policy for this scope, as a structured field: \
                 `\"media\";q=200;w=2` (a burst of q, refilled over w seconds). \
                 Absent when the scope's limit is off.",
                ))
                .build()
        });
    response
        .headers
        .entry(RATE_LIMIT.into())
        .or_insert_with(|| {
            HeaderBuilder::new()
                .schema(string())
                .description(Some(
                    "What is left: `\"media\";r=183;t=1` (r requests at once, full again in t \
                 seconds). Absent when the scope's limit is off.",
                ))
                .build()
        });
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_authenticated_operation_documents_the_shared_answers() {
        let (_, mut openapi) = crate::routes::documented_routes().split_for_parts();
        super::finish(&mut openapi);
        let json = serde_json::to_value(&openapi).expect("json");
        assert_eq!(json["openapi"], "3.1.0");
        let paths = json["paths"].as_object().expect("paths");
        assert!(paths.len() >= 15, "{:?}", paths.keys());
        for (path, item) in paths {
            for (method, operation) in item.as_object().expect("item") {
                let secured = operation.get("security").is_some();
                if path.starts_with("/v1/") {
                    assert!(secured, "{method} {path} has no security");
                    for status in ["401", "429"] {
                        assert!(
                            operation["responses"].get(status).is_some(),
                            "{method} {path} lacks {status}"
                        );
                    }
                }
            }
        }
    }
}
