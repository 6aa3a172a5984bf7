//! Retiring queues the topology no longer declares.
//!
//! The broker refuses to redeclare a queue with other arguments, so Kiln puts the arguments
//! that may change into the names (`<ns>.media.dl20`, `<ns>.retry.5000ms`) and never redeclares
//! one with new arguments. What a change leaves behind — the first topology's queues
//! (`<ns>.media`, `<ns>.delay.5000ms`, see [`Topology::legacy`]) and any queue in
//! `broker_queues` that no scheduler has declared for `KILN_RETIRE_AFTER` (schedulers whose
//! configurations differ during a rolling change keep each other's queues) — is retired here:
//!
//! - a work queue is unbound from the jobs exchange (so new messages go only to its successor)
//!   and its messages are moved to the jobs exchange, each acked only once the broker confirmed
//!   its copy (at least once: a crash in between leaves a duplicate, which the job row makes
//!   harmless);
//! - a retry queue still expires its messages into the jobs exchange by itself, so it is left
//!   to empty;
//! - either is deleted once it is empty and nobody consumes it (processes of the previous
//!   version may still, during a rolling upgrade; they redeclare it when they reconnect, and it
//!   is retired again). A message that reaches it between the look and the delete goes with
//!   it; its job row does not, and the rescuer republishes the job.
//!
//! Any number of schedulers may run this: an advisory lock lets one retire at a time.

use std::{collections::HashSet, time::Duration};

use kiln_core::{
    db,
    jobs::JobKind,
    queue::{AmqpError, Publisher, Role, Topology},
};
use lapin::{
    Channel,
    options::{
        BasicAckOptions, BasicGetOptions, BasicNackOptions, ExchangeDeleteOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::FieldTable,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How often the retirer looks.
const INTERVAL: Duration = Duration::from_secs(10);
/// Messages moved per queue and pass, so one pass stays short.
const BATCH: u32 = 10_000;

/// Runs until `cancel` fires.
pub async fn run(
    db: PgPool,
    publisher: Publisher,
    retire_after: Duration,
    cancel: CancellationToken,
) {
    loop {
        match pass(&db, &publisher, retire_after, &cancel).await {
            Ok(report) if report.is_quiet() => {}
            Ok(report) => tracing::info!(
                moved = report.moved,
                deleted = report.deleted,
                draining = report.draining,
                "retired queues of an earlier topology"
            ),
            Err(error) => tracing::warn!(%error, "retiring old queues failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Messages moved from retired work queues to the jobs exchange.
    pub moved: u64,
    /// Queues deleted.
    pub deleted: usize,
    /// Retired queues that still hold messages or consumers.
    pub draining: usize,
}

impl Report {
    fn is_quiet(&self) -> bool {
        *self == Self::default()
    }
}

/// Any number from one key, shared by every scheduler of a database: one retirer at a time, so
/// none deletes a queue while another has taken messages from it and not yet moved them.
const RETIRE_LOCK: i64 = 0x6b69_6c6e_7265_7469;

/// Records today's queues, then drains and deletes what earlier topologies left: the first
/// topology's names at once (no process of this version declares them), recorded names once
/// no scheduler has declared them for `retire_after`.
pub async fn pass(
    db: &PgPool,
    publisher: &Publisher,
    retire_after: Duration,
    cancel: &CancellationToken,
) -> anyhow::Result<Report> {
    let topology = publisher.topology();
    let current = topology.declared();
    db::broker_queues::record(db, &current).await?;
    let mut lock = db.begin().await?;
    let locked: bool = sqlx::query_scalar!("SELECT pg_try_advisory_xact_lock($1)", RETIRE_LOCK)
        .fetch_one(&mut *lock)
        .await?
        .unwrap_or(false);
    if !locked {
        return Ok(Report::default());
    }
    let current: HashSet<String> = current.into_iter().map(|(name, _)| name).collect();
    let mut retired = topology.legacy();
    for (name, role) in db::broker_queues::undeclared_for(db, retire_after).await? {
        if !current.contains(&name) && !retired.iter().any(|(n, _)| *n == name) {
            retired.push((name, role));
        }
    }
    let mut report = Report::default();
    for (name, role) in retired {
        if cancel.is_cancelled() {
            break;
        }
        let state = match retire(publisher, topology, &name, role, cancel).await {
            Ok(state) => state,
            // One queue's trouble does not hold up the others.
            Err(error) => {
                tracing::warn!(%error, queue = name, "could not retire a queue this time");
                continue;
            }
        };
        match state {
            State::Gone => db::broker_queues::forget(db, &name).await?,
            State::Deleted { moved } => {
                report.moved += moved;
                report.deleted += 1;
                tracing::info!(queue = name, moved, "retired queue deleted");
                db::broker_queues::forget(db, &name).await?;
            }
            State::Draining {
                moved,
                messages,
                consumers,
            } => {
                report.moved += moved;
                report.draining += 1;
                tracing::info!(
                    queue = name,
                    moved,
                    messages,
                    consumers,
                    "retired queue draining"
                );
            }
        }
    }
    lock.commit().await?;
    Ok(report)
}

enum State {
    /// Not on the broker.
    Gone,
    Deleted {
        moved: u64,
    },
    Draining {
        moved: u64,
        messages: u32,
        consumers: u32,
    },
}

async fn retire(
    publisher: &Publisher,
    topology: &Topology,
    name: &str,
    role: Role,
    cancel: &CancellationToken,
) -> Result<State, AmqpError> {
    // Every operation that the broker may refuse (a queue that is gone, one not empty) closes
    // its channel: each gets one of its own.
    let Some((messages, _)) = inspect(publisher, name).await? else {
        return Ok(State::Gone);
    };
    let mut moved = 0;
    if role == Role::Work {
        let channel = publisher.side_channel().await?;
        unbind(&channel, topology, name).await?;
        if messages > 0 {
            moved = move_messages(&channel, publisher, name, cancel).await?;
        }
        channel.close(200, "retired".into()).await.ok();
    }
    let Some((messages, consumers)) = inspect(publisher, name).await? else {
        return Ok(State::Gone);
    };
    if messages > 0 || consumers > 0 {
        return Ok(State::Draining {
            moved,
            messages,
            consumers,
        });
    }
    // Quorum queues refuse the `if-empty` and `if-unused` conditions, so the look above is the
    // check. A message that arrives in between (only a process of the previous version could
    // still publish there, the queue being unbound) is lost with the queue, but not its job:
    // the row stays live and the rescuer republishes it after `KILN_RESCUE_AFTER`.
    let channel = publisher.side_channel().await?;
    let deleted = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
    if let Err(error) = deleted {
        tracing::warn!(%error, queue = name, "retired queue not deleted yet");
        return Ok(State::Draining {
            moved,
            messages,
            consumers,
        });
    }
    channel.close(200, "retired".into()).await.ok();
    if role == Role::Delay {
        // Its exchange shares its name. Processes of the previous version publish retries
        // there until they stop; one that finds it gone backs off and tries again, and
        // redeclares it when it reconnects.
        let channel = publisher.side_channel().await?;
        channel
            .exchange_delete(name.into(), ExchangeDeleteOptions::default())
            .await
            .ok();
        channel.close(200, "retired".into()).await.ok();
    }
    Ok(State::Deleted { moved })
}

/// The queue's ready messages and consumers, or `None` if it does not exist.
async fn inspect(publisher: &Publisher, name: &str) -> Result<Option<(u32, u32)>, AmqpError> {
    let channel = publisher.side_channel().await?;
    let declared = channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(queue) => {
            channel.close(200, "inspected".into()).await.ok();
            Ok(Some((queue.message_count(), queue.consumer_count())))
        }
        Err(error) if kiln_core::queue::is_not_found(&error) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Unbinds a retired work queue from the jobs exchange, for every kind it may have served:
/// unbinding a binding that does not exist is not an error.
async fn unbind(channel: &Channel, topology: &Topology, name: &str) -> Result<(), AmqpError> {
    let jobs = topology.jobs_exchange();
    for kind in JobKind::ALL {
        channel
            .queue_unbind(
                name.into(),
                jobs.as_str().into(),
                kind.as_str().into(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Moves up to [`BATCH`] messages from `name` to the jobs exchange.
async fn move_messages(
    channel: &Channel,
    publisher: &Publisher,
    name: &str,
    cancel: &CancellationToken,
) -> Result<u64, AmqpError> {
    let mut moved = 0;
    while moved < u64::from(BATCH) && !cancel.is_cancelled() {
        let Some(message) = channel
            .basic_get(name.into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let forwarded = match kind_of(&delivery) {
            Some(kind) => {
                publisher
                    .forward(kind.as_str(), &delivery.data, delivery.properties.clone())
                    .await
            }
            // Not a job message Kiln could route: it rests in the dead queue instead.
            None => {
                publisher
                    .publish_dead(
                        &delivery.data,
                        delivery.routing_key.as_str(),
                        "not a job message (found in a retired queue)",
                    )
                    .await
            }
        };
        if let Err(error) = forwarded {
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .ok();
            return Err(error);
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        moved += 1;
    }
    metrics::counter!("kiln_queue_messages_moved_total").increment(moved);
    Ok(moved)
}

/// The job kind a message is for: its routing key when it was published to the jobs exchange
/// (directly or through a retry queue), else the kind its envelope names.
fn kind_of(delivery: &lapin::message::Delivery) -> Option<JobKind> {
    let known = |name: &str| JobKind::ALL.into_iter().find(|k| k.as_str() == name);
    known(delivery.routing_key.as_str()).or_else(|| {
        serde_json::from_slice::<kiln_core::jobs::Envelope>(&delivery.data)
            .ok()
            .map(|envelope| envelope.kind)
    })
}
