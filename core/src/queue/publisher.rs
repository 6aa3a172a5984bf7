//! Publishing job messages with publisher confirms.

use std::{sync::Arc, time::Duration};

use rand::Rng;

use lapin::{
    BasicProperties, Channel, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use secrecy::SecretString;
use tokio::sync::Mutex;

use super::{AmqpError, Topology, connect, declare};
use crate::jobs::Envelope;

/// One queue's depth as the broker reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueStats {
    /// The queue's short name (`media`, `email`, …, or `dead`).
    pub queue: String,
    /// Messages waiting to be delivered (not counting those delivered and not yet acked).
    pub ready: u32,
    pub consumers: u32,
}

/// AMQP delivery mode 2: the message is written to disk and survives a broker restart.
const PERSISTENT: u8 = 2;

/// How long the broker has to confirm a message before the publish counts as failed. A failed
/// publish loses nothing: the job row stays unpublished and is sent again later.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes job envelopes on a confirm-mode channel, connecting lazily and reconnecting after
/// any failure, so a process starts (and answers) while the broker is down.
#[derive(Clone)]
pub struct Publisher {
    url: SecretString,
    name: String,
    topology: Topology,
    link: Arc<Mutex<Option<Link>>>,
}

struct Link {
    // Kept so the connection lives as long as its channel.
    connection: Connection,
    channel: Channel,
}

impl Publisher {
    /// A publisher for `topology`; nothing is connected until the first publish.
    pub fn new(url: SecretString, name: &str, topology: Topology) -> Self {
        Self {
            url,
            name: name.to_owned(),
            topology,
            link: Arc::new(Mutex::new(None)),
        }
    }

    /// The names this publisher publishes under.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn channel(&self) -> Result<Channel, AmqpError> {
        let mut link = self.link.lock().await;
        if let Some(existing) = link.as_ref()
            && existing.connection.status().connected()
            && existing.channel.status().connected()
        {
            return Ok(existing.channel.clone());
        }
        let connection = connect(&self.url, &self.name).await?;
        let channel = connection.create_channel().await?;
        declare(&channel, &self.topology).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *link = Some(Link {
            connection,
            channel: channel.clone(),
        });
        Ok(channel)
    }

    async fn forget(&self) {
        *self.link.lock().await = None;
    }

    /// Publishes one job message and waits until the broker has it safely (confirm).
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), AmqpError> {
        let exchange = self.topology.jobs_exchange();
        self.send(&exchange, envelope, None).await
    }

    /// Publishes the message for the next attempt of a job whose attempt `attempt` failed, to
    /// the delay queue of the ladder's step for it; it reaches the job's queue when `delay` (from
    /// [`Self::retry_delay`]) is over.
    ///
    /// Jitter: each message also carries its own expiration, 80–100% of the step, so retries of
    /// jobs that failed together (a storage outage) do not all return at the same instant. A
    /// message can only wait behind the head of its queue, whose TTL is the step, so no retry
    /// waits longer than its step.
    pub async fn publish_retry(
        &self,
        envelope: &Envelope,
        attempt: i32,
        delay: Duration,
    ) -> Result<(), AmqpError> {
        let (exchange, _) = self.topology.delay_for_attempt(attempt);
        self.send(&exchange, envelope, Some(delay)).await
    }

    /// How long the retry after attempt `attempt` waits: the ladder's step, jittered (see
    /// [`Self::publish_retry`]). Chosen before the failure is recorded, which stores when the
    /// retry is due.
    pub fn retry_delay(&self, attempt: i32) -> Duration {
        let (_, step) = self.topology.delay_for_attempt(attempt);
        step.mul_f64(rand::rng().random_range(0.8..=1.0))
    }

    /// Puts a message that will not be processed into the dead queue, with the reason in the
    /// `x-kiln-error` header for whoever inspects it.
    pub async fn publish_dead(
        &self,
        body: &[u8],
        routing_key: &str,
        reason: &str,
    ) -> Result<(), AmqpError> {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-kiln-error".into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_headers(headers);
        let result = self
            .confirmed(&self.topology.dead(), routing_key, body, properties)
            .await;
        if result.is_err() {
            self.forget().await;
        }
        result
    }

    /// Republishes a message taken from a retired queue to the jobs exchange, unchanged (its
    /// routing key is its job kind), and waits for the confirm.
    pub async fn forward(
        &self,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        let result = self
            .confirmed(
                &self.topology.jobs_exchange(),
                routing_key,
                body,
                properties,
            )
            .await;
        if result.is_err() {
            self.forget().await;
        }
        result
    }

    /// A channel of its own on this publisher's connection, for passive declares and other
    /// operations whose failure closes the channel: the publishing channel stays open.
    pub async fn side_channel(&self) -> Result<Channel, AmqpError> {
        self.channel().await?;
        let link = self.link.lock().await;
        let link = link
            .as_ref()
            .ok_or(AmqpError::Closed("no connection to the broker"))?;
        Ok(link.connection.create_channel().await?)
    }

    async fn send(
        &self,
        exchange: &str,
        envelope: &Envelope,
        expiration: Option<Duration>,
    ) -> Result<(), AmqpError> {
        let body = serde_json::to_vec(envelope).expect("an envelope always serializes");
        let mut properties = BasicProperties::default()
            .with_message_id(ShortString::from(envelope.id.to_string()))
            .with_content_type("application/json".into())
            .with_type(envelope.kind.as_str().into())
            .with_delivery_mode(PERSISTENT)
            .with_timestamp(envelope.enqueued_at.timestamp().max(0) as u64);
        if let Some(expiration) = expiration {
            properties =
                properties.with_expiration(ShortString::from(expiration.as_millis().to_string()));
        }
        if let Some(traceparent) = &envelope.traceparent {
            // The standard header, for consumers and tools that read it there.
            let mut headers = FieldTable::default();
            headers.insert(
                "traceparent".into(),
                AMQPValue::LongString(LongString::from(traceparent.as_str())),
            );
            properties = properties.with_headers(headers);
        }
        let result = self
            .confirmed(exchange, envelope.kind.as_str(), &body, properties)
            .await;
        if result.is_err() {
            self.forget().await;
        }
        result
    }

    async fn confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        let publish = async {
            let channel = self.channel().await?;
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    properties,
                )
                .await?
                .await?;
            if confirm.is_ack() && confirm.take_message().is_none() {
                Ok(())
            } else {
                // A nack, or an unroutable message returned by the broker (mandatory).
                Err(AmqpError::Nacked)
            }
        };
        tokio::time::timeout(CONFIRM_TIMEOUT, publish)
            .await
            .map_err(|_| AmqpError::Timeout("publish confirm"))?
    }

    /// Ready messages and consumers of every work queue and of the dead queue, read with
    /// passive declares on a short-lived channel so that a failure cannot close the publishing
    /// channel.
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, AmqpError> {
        let probe = self.side_channel().await?;
        let mut names: Vec<(String, String)> = crate::jobs::QueueKind::ALL
            .iter()
            .map(|q| (q.as_str().to_owned(), self.topology.queue(*q)))
            .collect();
        names.push(("dead".to_owned(), self.topology.dead()));
        let mut stats = Vec::with_capacity(names.len());
        for (queue, name) in names {
            let declared = tokio::time::timeout(
                CONFIRM_TIMEOUT,
                probe.queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await
            .map_err(|_| AmqpError::Timeout("queue declare"))??;
            stats.push(QueueStats {
                queue,
                ready: declared.message_count(),
                consumers: declared.consumer_count(),
            });
        }
        probe.close(200, "done".into()).await.ok();
        Ok(stats)
    }

    /// Whether the broker can be reached now (for readiness checks).
    pub async fn check(&self) -> Result<(), AmqpError> {
        match self.channel().await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.forget().await;
                Err(e)
            }
        }
    }
}
