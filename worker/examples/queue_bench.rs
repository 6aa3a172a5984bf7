//! Goal 3 of BENCHMARKS.md: how many jobs per second pass through the queue, end to end, next to
//! what the same broker does for a raw lapin publisher and consumer with the same durability.
//!
//! - `queue_bench raw COUNT` publishes COUNT persistent 200-byte messages with publisher
//!   confirms to a fresh quorum queue while a consumer on its own connection takes them with
//!   manual acks; prints messages per second from the first publish to the last ack. The queue
//!   lives in AMQP_URL's vhost and is deleted afterwards. Tunables: `BENCH_CONFIRM_WINDOW`
//!   (default 2048, as many unconfirmed messages as Kiln's producers have), `BENCH_PREFETCH`
//!   (default 1024, the worker's concurrency in `bench/queue.sh`), `BENCH_ACK_EVERY` (64).
//! - `queue_bench kiln COUNT` enqueues COUNT `noop` jobs the way the API enqueues work (row
//!   committed, published with confirms, `published_at` recorded), `BENCH_PRODUCERS` at once,
//!   while a running `kiln-worker` consumes them; prints jobs per second from the first insert to
//!   the moment every row reads `succeeded`, and on stderr the mean time a producer waited per
//!   job for the committed insert and for the confirmed publish. Configured like the Kiln processes (DATABASE_URL,
//!   AMQP_URL, KILN_NAMESPACE).
//!
//! `bench/queue.sh` runs both in one run and prints the ratio.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use kiln_core::{
    Config, db,
    jobs::JobKind,
    queue::{self, Publisher},
};
use lapin::{
    BasicProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Where producers' time went, summed over every job, in microseconds.
#[derive(Default)]
struct ProducerWaits {
    /// Until the job's row was committed.
    insert: AtomicU64,
    /// Until its message was confirmed by the broker.
    publish: AtomicU64,
}

impl ProducerWaits {
    fn add(total: &AtomicU64, waited: Duration) {
        total.fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    fn mean_ms(total: &AtomicU64, jobs: usize) -> f64 {
        total.load(Ordering::Relaxed) as f64 / jobs as f64 / 1e3
    }
}

fn tunable(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let mode = args.next().unwrap_or_default();
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let config = Config::from_env()?;
    let (label, seconds) = match mode.as_str() {
        "raw" => ("raw lapin", raw(&config, count).await?),
        "kiln" => ("kiln noop jobs", kiln(&config, count).await?),
        _ => anyhow::bail!("usage: queue_bench raw|kiln COUNT"),
    };
    println!(
        "{label}: count={count} seconds={seconds:.2} per_s={:.0}",
        count as f64 / seconds
    );
    Ok(())
}

/// The broker's own rate: confirms and manual acks on a quorum queue, no database.
async fn raw(config: &Config, count: usize) -> anyhow::Result<f64> {
    let window = tunable("BENCH_CONFIRM_WINDOW", 2048);
    let prefetch = tunable("BENCH_PREFETCH", 1024) as u16;
    let ack_every = tunable("BENCH_ACK_EVERY", 64).max(1);
    let name = format!("{}.bench-raw.{}", config.namespace, std::process::id());

    let consumer_link = queue::connect(&config.amqp_url, "bench-raw-consumer").await?;
    let consumer_channel = consumer_link.create_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    consumer_channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    consumer_channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let publisher_link = queue::connect(&config.amqp_url, "bench-raw-publisher").await?;
    let publisher = publisher_link.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let started = Instant::now();
    let consumed = tokio::spawn(async move {
        let mut received = 0;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            received += 1;
            if received % ack_every == 0 || received == count {
                delivery
                    .acker
                    .ack(BasicAckOptions { multiple: true })
                    .await?;
            }
            if received == count {
                break;
            }
        }
        anyhow::Ok(())
    });

    let body = [b'x'; 200];
    let in_flight = Arc::new(Semaphore::new(window));
    let mut confirms = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = in_flight.clone().acquire_owned().await?;
        let confirm = publisher
            .basic_publish(
                "".into(),
                name.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        confirms.spawn(async move {
            let confirmed = confirm.await?;
            drop(permit);
            anyhow::ensure!(confirmed.is_ack(), "the broker nacked a message");
            anyhow::Ok(())
        });
    }
    while let Some(confirmed) = confirms.join_next().await {
        confirmed??;
    }
    consumed.await??;
    let seconds = started.elapsed().as_secs_f64();

    publisher
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await?;
    Ok(seconds)
}

/// Kiln's rate for jobs that do nothing, through the same calls the API makes.
async fn kiln(config: &Config, count: usize) -> anyhow::Result<f64> {
    let producers = tunable("BENCH_PRODUCERS", 2048);
    // Enough connections that inserts are not queued behind each other; Postgres allows 100.
    let pool = db::connect_lazy(&config.database_url, producers.min(40) as u32)?;
    let publisher = Publisher::new(config.amqp_url.clone(), "bench-producer", config.topology());
    publisher.check().await?;
    let writes = db::job_writes::JobWrites::spawn(pool.clone());
    let max_attempts = config.max_attempts(JobKind::Noop);

    let (started, wall_start) = (Instant::now(), chrono::Utc::now());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let waited = Arc::new(ProducerWaits::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..producers {
        let (publisher, next, waited) = (publisher.clone(), next.clone(), waited.clone());
        let writes = writes.clone();
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let insert_started = Instant::now();
                let job = writes
                    .insert(&db::jobs::NewJob {
                        id: Uuid::now_v7(),
                        tenant: None,
                        kind: JobKind::Noop,
                        payload: serde_json::json!({}),
                        max_attempts,
                        traceparent: None,
                    })
                    .await?;
                let publish_started = Instant::now();
                queue::publish_committed(&writes, &publisher, &job).await;
                ProducerWaits::add(&waited.insert, publish_started - insert_started);
                ProducerWaits::add(&waited.publish, publish_started.elapsed());
            }
            anyhow::Ok(())
        });
    }
    while let Some(produced) = tasks.join_next().await {
        produced??;
    }
    writes.flush_published().await;
    eprintln!(
        "enqueued (committed, published, recorded) in {:.2}s; per job, insert {:.1} ms, publish {:.1} ms",
        started.elapsed().as_secs_f64(),
        ProducerWaits::mean_ms(&waited.insert, count),
        ProducerWaits::mean_ms(&waited.publish, count),
    );
    // Polled sparsely so the counting costs Postgres little; the end is the last job's
    // `finished_at`, exact whatever the polling interval.
    loop {
        let (done, last): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
            "SELECT count(*), max(finished_at) FROM jobs
             WHERE finished_at IS NOT NULL AND kind = 'noop' AND status = 'succeeded'",
        )
        .fetch_one(&pool)
        .await?;
        if done as usize >= count {
            let last = last.unwrap_or_else(chrono::Utc::now);
            return Ok((last - wall_start).as_seconds_f64());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {done} of {count} jobs succeeded in 10 minutes"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
