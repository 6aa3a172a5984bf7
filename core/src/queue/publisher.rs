//! Publishing job messages with publisher confirms.

use std::{sync::Arc, time::Duration};

use lapin::{
    BasicProperties, Channel, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::ShortString,
};
use secrecy::SecretString;
use tokio::sync::Mutex;

use super::{AmqpError, Topology, connect, declare};
use crate::jobs::Envelope;

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
        let result = self.try_publish(envelope).await;
        if result.is_err() {
            self.forget().await;
        }
        result
    }

    async fn try_publish(&self, envelope: &Envelope) -> Result<(), AmqpError> {
        let channel = self.channel().await?;
        let body = serde_json::to_vec(envelope).expect("an envelope always serializes");
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(envelope.id.to_string()))
            .with_content_type("application/json".into())
            .with_type(envelope.kind.as_str().into())
            // 2 = persistent: the message survives a broker restart.
            .with_delivery_mode(2)
            .with_timestamp(envelope.enqueued_at.timestamp().max(0) as u64);
        let exchange = self.topology.jobs_exchange();
        let publish = async {
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    envelope.kind.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &body,
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
