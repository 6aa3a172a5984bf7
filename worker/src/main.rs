//! `kiln-worker`: consume jobs until SIGTERM, then drain and exit 0.

use anyhow::Context as _;
use kiln_core::{Config, db, jobs::QueueKind, shutdown, telemetry};
use kiln_worker::{Context, backfill, consumer, heartbeat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let telemetry = telemetry::init(config.log_format, "kiln-worker");
    let cancel = shutdown::on_signal();
    let metrics_addr = config.metrics_addr.unwrap_or(([127, 0, 0, 1], 9091).into());
    let metrics = telemetry::install_metrics_recorder()?;
    let (_, metrics_task) = telemetry::serve_metrics(metrics_addr, metrics, cancel.clone()).await?;

    let ctx = Context::from_config(config)?;
    if ctx.config.migrate {
        db::migrate(&ctx.db).await.context("running migrations")?;
    }
    tracing::info!(
        concurrency = ctx.config.worker_concurrency,
        cpu_threads = ctx.config.cpu_threads,
        storage = ctx.storage.describe(),
        "worker starting"
    );
    let queues = QueueKind::ALL.to_vec();
    let registration = heartbeat::registration(ctx.starter.worker, &queues);
    let report = heartbeat::Reporter {
        slots: ctx.slots.clone(),
        held: ctx.held.clone(),
    };
    let heartbeat = heartbeat::Heartbeat::start(&ctx.config, registration, report).await?;
    let writes = ctx.writes.clone();
    let usage = ctx.usage.clone();
    let backfill = tokio::spawn(backfill::run(ctx.clone(), cancel.clone()));
    consumer::run(ctx, queues, cancel).await;
    backfill.abort();
    // Drained (or out of grace): what is still running here may be taken over at once.
    heartbeat.stop().await;
    // Emails enqueued by the last jobs: record their publishes rather than leave them to the relay.
    writes.flush_published().await;
    usage.flush().await;
    metrics_task.await.ok();
    tracing::info!("worker stopped");
    telemetry.shutdown().await;
    Ok(())
}
