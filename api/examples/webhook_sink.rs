//! The receiver of the webhook benchmark (`bench/webhooks.sh`): answers every `POST` with 204
//! at once and counts them; `GET /count` says how many came. No verification: it measures
//! Kiln's side of a delivery, not the receiver's.
//!
//! `cargo run --release -p kiln-api --example webhook_sink -- ADDR`

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};

async fn receive(State(count): State<Arc<AtomicU64>>) -> StatusCode {
    count.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn count(State(count): State<Arc<AtomicU64>>) -> String {
    count.load(Ordering::Relaxed).to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18483".into());
    let app = Router::new()
        .route("/count", get(count))
        .route("/{*path}", post(receive))
        .with_state(Arc::new(AtomicU64::new(0)));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
