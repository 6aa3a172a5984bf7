//! The delivery loop.
//!
//! Connect, declare the topology, set each queue's prefetch to its slots (see [`crate::slots`])
//! and consume with manual acks. Each delivery runs as a tracked task once it has a slot; when the connection or channel dies the
//! loop reconnects with exponential backoff and jitter (in-flight messages of the dead channel
//! are redelivered by the broker, and the job rows make that harmless). On shutdown the consumer
//! is cancelled first, then in-flight jobs get the grace period to finish and be acked.

use std::time::Duration;

use futures::StreamExt;
use kiln_core::{
    jobs::QueueKind,
    queue::{self, AmqpError, Topology},
};
use lapin::{
    Channel, Connection,
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
};
use rand::Rng;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    Context,
    acks::Acks,
    reconcile,
    runner::{self, Settle},
};

/// Time allowed to settle one message with the broker.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Consumes `queues` until `shutdown` fires, then drains in-flight jobs.
pub async fn run(ctx: Context, queues: Vec<QueueKind>, shutdown: CancellationToken) {
    let topology = ctx.config.topology();
    let tracker = TaskTracker::new();
    let mut failures: u32 = 0;
    let mut connection = None;
    while !shutdown.is_cancelled() {
        match consume(&ctx, &topology, &queues, &tracker, &shutdown, &mut failures).await {
            Ok(conn) => {
                connection = Some(conn);
                break;
            }
            Err(error) => {
                failures += 1;
                let delay = reconnect_delay(failures);
                metrics::counter!("kiln_amqp_reconnects_total", "process" => "worker").increment(1);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "consumer lost; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
    tracker.close();
    let grace = ctx.config.shutdown_grace;
    tracing::info!(
        in_flight = tracker.len(),
        grace_s = grace.as_secs(),
        "draining in-flight jobs"
    );
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        // Unacked messages go back to the queue when the connection closes; their rows say
        // `running`, which the next worker takes over as a new attempt.
        tracing::warn!(
            left = tracker.len(),
            "grace period over; unfinished jobs will be redelivered"
        );
    }
    if let Some(connection) = connection {
        connection
            .close(200, "worker shutting down".into())
            .await
            .ok();
    }
}

/// One connection's life: returns `Ok` (with the connection, still open for in-flight acks)
/// when shutdown stops it, `Err` when the broker does.
async fn consume(
    ctx: &Context,
    topology: &Topology,
    queues: &[QueueKind],
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    failures: &mut u32,
) -> Result<Connection, AmqpError> {
    let connection = queue::connect(&ctx.config.amqp_url, "kiln-worker").await?;
    let channel = connection.create_channel().await?;
    queue::declare(&channel, topology).await?;
    let mut streams = Vec::new();
    for queue in queues {
        let name = topology.queue(*queue);
        // Per consumer (quorum queues refuse a global QoS): set before each consume, so each
        // queue's consumer holds no more deliveries than its slots can start.
        let prefetch = ctx.slots.limit(*queue);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(queue = name, prefetch, "consuming");
        streams.push((Some(*queue), consumer));
    }
    // Every worker also reconciles what the broker dead-letters, whatever queues it serves.
    let reconcile_queue = topology.reconcile();
    channel
        .basic_qos(reconcile::PREFETCH, BasicQosOptions::default())
        .await?;
    let reconciling = channel
        .basic_consume(
            reconcile_queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    streams.push((None, reconciling));
    // Consuming again: the next loss starts its backoff from the shortest delay.
    *failures = 0;
    // Deliveries still waiting for a slot when this connection is lost have been given back
    // to the broker already: they must not start (and must not be counted as waiting).
    let connection_gone = shutdown.child_token();
    let _connection_gone = connection_gone.clone().drop_guard();
    let acks = Acks::spawn();
    let mut deliveries = futures::stream::select_all(
        streams
            .iter()
            .map(|&(queue, ref consumer)| consumer.clone().map(move |d| (queue, d))),
    );
    let streams: Vec<lapin::Consumer> = streams.into_iter().map(|(_, c)| c).collect();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                stop_consuming(&channel, &streams).await;
                return Ok(connection);
            }
            next = deliveries.next() => match next {
                Some((None, Ok(delivery))) => {
                    acks.delivered(delivery.delivery_tag);
                    let (ctx, shutdown, acks) = (ctx.clone(), shutdown.clone(), acks.clone());
                    tracker.spawn(async move {
                        let settle = reconcile::handle(&ctx, &delivery, &shutdown).await;
                        settle_message(&delivery, settle, &acks).await;
                    });
                }
                Some((Some(queue), Ok(delivery))) => {
                    acks.delivered(delivery.delivery_tag);
                    let ctx = ctx.clone();
                    let shutdown = shutdown.clone();
                    let connection_gone = connection_gone.clone();
                    let acks = acks.clone();
                    tracker.spawn(async move {
                        let slot = tokio::select! {
                            slot = ctx.slots.acquire(queue) => slot,
                            // Not started: back to the queue for another worker (on shutdown;
                            // with the connection gone the broker has it back already).
                            _ = connection_gone.cancelled() => {
                                return settle_message(&delivery, Settle::Requeue, &acks).await;
                            }
                        };
                        let settle = runner::handle(
                            &ctx,
                            &delivery.data,
                            delivery.routing_key.as_str(),
                            &shutdown,
                        )
                        .await;
                        settle_message(&delivery, settle, &acks).await;
                        drop(slot);
                    });
                }
                Some((_, Err(error))) => return Err(error.into()),
                None => return Err(AmqpError::Closed("the consumer was cancelled by the broker")),
            }
        }
    }
}

async fn stop_consuming(channel: &Channel, streams: &[lapin::Consumer]) {
    for consumer in streams {
        let cancelled = channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await;
        if let Err(error) = cancelled {
            tracing::warn!(%error, "could not cancel a consumer");
        }
    }
}

async fn settle_message(delivery: &Delivery, settle: Settle, acks: &Acks) {
    let requeue = match settle {
        Settle::Ack => {
            return acks
                .ack(delivery.delivery_tag, delivery.acker.clone())
                .await;
        }
        Settle::DeadLetter => false,
        Settle::Requeue => true,
    };
    let nack = delivery.acker.nack(BasicNackOptions {
        requeue,
        ..BasicNackOptions::default()
    });
    let result = tokio::time::timeout(SETTLE_TIMEOUT, nack).await;
    // Sent (or failed) either way: acks of later deliveries no longer wait for this one.
    acks.settled(delivery.delivery_tag);
    match result {
        Ok(Ok(_)) => {}
        // The job row already holds the outcome; the broker will redeliver and the row makes
        // the redelivery a no-op.
        Ok(Err(error)) => tracing::warn!(%error, ?settle, "could not settle a message"),
        Err(_) => tracing::warn!(?settle, "settling a message timed out"),
    }
}

fn reconnect_delay(failures: u32) -> Duration {
    let base = (250u64 << failures.min(7)).min(30_000) as f64;
    Duration::from_millis((base * rand::rng().random_range(0.5..1.0)) as u64)
}
