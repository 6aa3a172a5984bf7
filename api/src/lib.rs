//! kiln-api: the thin HTTP front of Kiln.
//!
//! - [`startup`]: builds the application (binds, connects lazily) and runs it until stopped.
//! - [`state`]: the one shared state handed to every handler.
//! - [`error`]: the single API error type and its JSON body.
//! - [`auth`]: bearer API keys, scopes and tenants.
//! - [`extract`]: path and query extractors that reject with [`error::ApiError`].
//! - [`deadline`]: the total time a request other than an upload may take.
//! - [`limits`]: request rates, failed authentications and uploads in flight.
//! - [`openapi`]: the OpenAPI document, generated from the handlers.
//! - [`http_metrics`]: request counts and latency by route and status.
//! - [`routes`]: one module per resource and action.
//! - [`session`]: the dashboard's login cookie and CSRF token.
//! - [`trace_layer`]: W3C trace context per request, handed on to the jobs it enqueues.
//! - [`keys`]: the `kiln-api keys` command.
//! - [`backups`]: the `kiln-api backups` commands (list, restore).

pub mod auth;
pub mod backups;
pub mod cors;
pub mod deadline;
pub mod error;
pub mod extract;
pub mod http_metrics;
pub mod keys;
pub mod limits;
pub mod openapi;
pub mod routes;
pub mod session;
pub mod startup;
pub mod state;
pub mod tenant_settings;
pub mod trace_layer;

pub use startup::Application;
