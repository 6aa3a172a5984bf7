//! Building and running the API: bind (port 0 works, for tests), connect lazily, serve until the
//! shutdown token fires.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use kiln_core::{Config, cache::Cache, db, queue::Publisher, storage::Storage};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{routes::router, state::AppState};

/// A bound, ready-to-run API server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds `config.api_addr` and prepares connections. Postgres, Redis and RabbitMQ are
    /// connected lazily, so the API starts (and `/readyz` explains) while any of them is down.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let state = build_state(config)?;
        if state.config.migrate {
            db::migrate(&state.db).await.context("running migrations")?;
        }
        let listener = TcpListener::bind(state.config.api_addr)
            .await
            .with_context(|| format!("binding KILN_API_ADDR {}", state.config.api_addr))?;
        Ok(Self { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `cancel` fires, then finishes in-flight requests.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr()?, storage = self.state.storage.describe(), "listening");
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
            .context("serving HTTP")
    }
}

/// The shared state, from configuration.
pub fn build_state(config: Config) -> anyhow::Result<AppState> {
    let db = db::connect_lazy(&config.database_url, 20).context("DATABASE_URL")?;
    let cache =
        Cache::new(&config.redis_url, &config.namespace, config.cache_ttl).context("REDIS_URL")?;
    let storage = Storage::from_url(&config.storage_url).context("KILN_STORAGE_URL")?;
    let publisher = Publisher::new(config.amqp_url.clone(), "kiln-api", config.topology());
    Ok(AppState {
        db,
        cache,
        storage,
        publisher,
        config: Arc::new(config),
    })
}
