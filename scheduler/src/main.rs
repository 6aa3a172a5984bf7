//! `kiln-scheduler`: loads the cron table, runs the outbox relay, until SIGTERM.

use anyhow::Context;
use kiln_core::{Config, db, queue::Publisher, shutdown, telemetry};
use kiln_scheduler::{relay, schedule};
use tokio_cron_scheduler::{Job, JobScheduler};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    let cancel = shutdown::on_signal();
    let metrics_addr = config.metrics_addr.unwrap_or(([127, 0, 0, 1], 9092).into());
    let metrics = telemetry::install_metrics_recorder()?;
    let (_, metrics_task) = telemetry::serve_metrics(metrics_addr, metrics, cancel.clone()).await?;

    let table = schedule::parse(&config.schedules)?;
    let mut cron = JobScheduler::new()
        .await
        .context("starting the cron scheduler")?;
    for entry in &table {
        let name = entry.name.clone();
        let job = Job::new_async(entry.cron.as_str(), move |_, _| {
            let name = name.clone();
            Box::pin(async move {
                // Emitting the job (deduplicated per tick) arrives with the cron-jobs issue.
                tracing::info!(schedule = name, "tick");
            })
        })
        .with_context(|| format!("invalid cron expression in schedule {}", entry.name))?;
        cron.add(job).await?;
        tracing::info!(
            schedule = entry.name,
            cron = entry.cron,
            kind = entry.kind.as_str(),
            "schedule loaded"
        );
    }
    cron.start().await?;

    let pool = db::connect_lazy(&config.database_url, 4)?;
    if config.migrate {
        db::migrate(&pool).await.context("running migrations")?;
    }
    let publisher = Publisher::new(config.amqp_url.clone(), "kiln-scheduler", config.topology());
    relay::run(pool, publisher, cancel.clone()).await;

    cron.shutdown().await.ok();
    metrics_task.await.ok();
    tracing::info!("scheduler stopped");
    Ok(())
}
