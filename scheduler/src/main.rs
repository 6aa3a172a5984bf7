//! `kiln-scheduler`: runs the cron table, the outbox relay and the rescuer until SIGTERM, or fires one
//! schedule by hand (`kiln-scheduler enqueue <schedule>`).

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kiln_core::{Config, db, queue::Publisher, shutdown, telemetry};
use kiln_scheduler::{catch_up, dispatch, relay, rescuer, retire, sampler, schedule, tick};
use tokio_cron_scheduler::{Job, JobScheduler};

#[derive(Parser)]
#[command(
    name = "kiln-scheduler",
    version,
    about = "Kiln's cron scheduler and outbox relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the schedules and the relay (the default).
    Run,
    /// Enqueue one schedule's job now, by hand; prints the job id.
    Enqueue { schedule: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    let _telemetry = telemetry::init(config.log_format, "kiln-scheduler");
    let table = schedule::load(&config.schedules)?;
    let pool = db::connect_lazy(&config.database_url, 4)?;
    let publisher = Publisher::new(config.amqp_url.clone(), "kiln-scheduler", config.topology());
    match cli.command.unwrap_or(Command::Run) {
        Command::Enqueue { schedule } => {
            let Some(entry) = table.iter().find(|s| s.name == schedule) else {
                let names: Vec<_> = table.iter().map(|s| s.name.as_str()).collect();
                bail!(
                    "no schedule {schedule:?}; KILN_SCHEDULES has {}",
                    names.join(", ")
                );
            };
            let id = tick::enqueue_now(&pool, &publisher, &config, entry).await?;
            println!("{id}");
            Ok(())
        }
        Command::Run => run(config, table, pool, publisher).await,
    }
}

async fn run(
    config: Config,
    table: Vec<schedule::Schedule>,
    pool: sqlx::PgPool,
    publisher: Publisher,
) -> anyhow::Result<()> {
    let cancel = shutdown::on_signal();
    let metrics_addr = config.metrics_addr.unwrap_or(([127, 0, 0, 1], 9092).into());
    let metrics = telemetry::install_metrics_recorder()?;
    let (_, metrics_task) = telemetry::serve_metrics(metrics_addr, metrics, cancel.clone()).await?;
    if config.migrate {
        db::migrate(&pool).await.context("running migrations")?;
    }
    let config = Arc::new(config);

    let mut cron = JobScheduler::new()
        .await
        .context("starting the cron scheduler")?;
    for entry in table {
        let entry = Arc::new(entry);
        tracing::info!(
            schedule = entry.name,
            cron = entry.cron,
            kind = entry.kind.as_str(),
            missed = entry.missed.as_str(),
            "schedule loaded"
        );
        // Postgres may be down at start-up: the schedule still runs, its gap is just not
        // measured this time.
        if let Err(error) =
            catch_up::start(&pool, &publisher, &config, &entry, chrono::Utc::now()).await
        {
            tracing::warn!(schedule = entry.name, %error, "could not catch up missed ticks");
        }
        let (pool, publisher, config) = (pool.clone(), publisher.clone(), config.clone());
        let last = Arc::new(tick::LastFired::default());
        let expression = entry.cron.clone();
        let job = Job::new_async(expression.as_str(), move |_, _| {
            let (entry, pool, publisher, config, last) = (
                entry.clone(),
                pool.clone(),
                publisher.clone(),
                config.clone(),
                last.clone(),
            );
            Box::pin(async move {
                let now = chrono::Utc::now();
                tick::fire_due(&pool, &publisher, &config, &entry, &last, now).await;
            })
        })
        .context("invalid cron expression")?;
        cron.add(job).await?;
    }
    cron.start().await?;
    tracing::info!("scheduler started");

    let sampling = tokio::spawn(sampler::run(
        pool.clone(),
        publisher.clone(),
        config.heartbeat_timeout,
        cancel.clone(),
    ));
    let rescue = rescuer::Settings {
        rescue_after: config.rescue_after,
        heartbeat_timeout: config.heartbeat_timeout,
    };
    let rescuing = tokio::spawn(rescuer::run(
        pool.clone(),
        publisher.clone(),
        rescue,
        cancel.clone(),
    ));
    let retiring = tokio::spawn(retire::run(
        pool.clone(),
        publisher.clone(),
        config.retire_after,
        cancel.clone(),
    ));
    let dispatching = tokio::spawn(dispatch::run(
        pool.clone(),
        publisher.clone(),
        cancel.clone(),
    ));
    relay::run(pool, publisher, cancel.clone()).await;
    dispatching.await.ok();
    sampling.await.ok();
    rescuing.await.ok();
    retiring.await.ok();

    cron.shutdown().await.ok();
    metrics_task.await.ok();
    tracing::info!("scheduler stopped");
    Ok(())
}
