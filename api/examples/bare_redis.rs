//! The peer of the API benchmark (goal 4 of BENCHMARKS.md): a bare axum handler that answers
//! every `GET /v1/media/{id}` with one Redis GET of a fixed key, no authentication, no cache
//! logic — the floor under what `kiln-api` does for a cached read.
//!
//! `cargo run --release -p kiln-api --example bare_redis -- ADDR REDIS_URL KEY`

use axum::{Router, extract::State, http::StatusCode, routing::get};
use redis::AsyncCommands;

#[derive(Clone)]
struct Peer {
    redis: redis::aio::ConnectionManager,
    key: String,
}

async fn media(State(peer): State<Peer>) -> Result<Vec<u8>, StatusCode> {
    let mut redis = peer.redis.clone();
    let value: Option<Vec<u8>> = redis
        .get(&peer.key)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    value.ok_or(StatusCode::NOT_FOUND)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18481".into());
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let key = args.next().unwrap_or_else(|| "bench:key".into());
    let redis = redis::Client::open(url)?.get_connection_manager().await?;
    let app = Router::new()
        .route("/v1/media/{id}", get(media))
        .with_state(Peer { redis, key });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
