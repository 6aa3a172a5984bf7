//! Building and running the API: bind (port 0 works, for tests), connect lazily, serve until the
//! shutdown token fires.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use kiln_core::{Config, cache::Cache, db, queue::Publisher, storage::Storage};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

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
        if state.config.media_urls.dev_key {
            tracing::warn!(
                "KILN_URL_SIGNING_KEY is unset: variant URLs are signed with the development key, \
                 which anyone can read in Kiln's source; set a secret of your own in production"
            );
        }
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

    /// Serves until `cancel` fires, then lets in-flight requests finish for at most
    /// `KILN_SHUTDOWN_GRACE`: a stalled client must not be able to hold SIGTERM off forever.
    ///
    /// Connections are served by hyper directly, not `axum::serve`, for its timer: without one
    /// a client may take as long as it likes to send its headers, or keep an idle connection
    /// for ever. With it, headers must arrive within `KILN_HEADER_TIMEOUT_SECS`, and the same
    /// limit closes a keep-alive connection that sends no next request.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr()?, storage = self.state.storage.describe(), "listening");
        let grace = self.state.config.shutdown_grace;
        let header_timeout = self.state.config.header_timeout;
        let writes = self.state.writes.clone();
        tokio::spawn(
            self.state
                .rates
                .clone()
                .sync_until(self.state.cache.clone(), cancel.clone()),
        );
        let app = router(self.state);
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(header_timeout))
            .keep_alive_timeout(header_timeout);
        let connections = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, most likely: give connections time to close.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = cancel.cancelled() => break,
            };
            stream.set_nodelay(true).ok();
            // The peer's address, for limits per client (see limits::client).
            let app = app.clone().map_request(
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                },
            );
            let service = TowerToHyperService::new(app);
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = connections.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        tokio::select! {
            () = connections.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                // Connections still open end with the runtime, which the process is about to
                // shut down.
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "shutdown grace period over; abandoning unfinished requests"
                );
            }
        }
        // Deferred publish records would otherwise cost a duplicate message each (the relay's).
        writes.flush_published().await;
        Ok(())
    }
}

/// The shared state, from configuration.
pub fn build_state(config: Config) -> anyhow::Result<AppState> {
    let db = db::connect_lazy(&config.database_url, 20).context("DATABASE_URL")?;
    let cache =
        Cache::new(&config.redis_url, &config.namespace, config.cache_ttl).context("REDIS_URL")?;
    let storage = Storage::from_url(&config.storage_url).context("KILN_STORAGE_URL")?;
    let publisher = Publisher::new(config.amqp_url.clone(), "kiln-api", config.topology());
    let templates = kiln_core::templates::Templates::load(config.email_templates.as_deref())
        .context("KILN_EMAIL_TEMPLATES")?;
    let usage_db =
        db::connect_lazy_async_commit(&config.database_url, 4).context("DATABASE_URL")?;
    Ok(AppState {
        usage_db,
        writes: kiln_core::db::job_writes::JobWrites::spawn(db.clone()),
        db,
        cache: cache.clone(),
        storage,
        publisher,
        templates,
        keys: crate::auth::KeyCache::new(config.auth_cache_ttl),
        signer: Arc::new(kiln_core::media_urls::UrlSigner::new(&config.media_urls)),
        settings: Arc::new(crate::tenant_settings::SettingsCache::new(
            config.auth_cache_ttl,
        )),
        rates: crate::limits::rate::RateLimiter::new(),
        uploads: crate::limits::uploads::UploadSlots::new(&config.limits, cache.clone()),
        config: Arc::new(config),
    })
}
