//! Names and declarations of exchanges and queues.

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};

use crate::jobs::{JobKind, QueueKind};

/// The names of everything in one namespace.
#[derive(Debug, Clone)]
pub struct Topology {
    namespace: String,
}

impl Topology {
    /// Names under `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
        }
    }

    /// The exchange jobs are published to.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.namespace)
    }

    /// The queue of one kind of work.
    pub fn queue(&self, queue: QueueKind) -> String {
        format!("{}.{}", self.namespace, queue.as_str())
    }

    /// Where rejected messages are dead-lettered (exchange and queue share the name).
    pub fn dead(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    /// Every queue name, for operators and for tests that clean up.
    pub fn all_queues(&self) -> Vec<String> {
        let mut names: Vec<_> = QueueKind::ALL.iter().map(|q| self.queue(*q)).collect();
        names.push(self.dead());
        names
    }

    /// Every exchange name.
    pub fn all_exchanges(&self) -> Vec<String> {
        vec![self.jobs_exchange(), self.dead()]
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Declares the whole topology; idempotent, so every process does it at start and after a
/// reconnect.
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<(), lapin::Error> {
    let jobs = topology.jobs_exchange();
    let dead = topology.dead();
    channel
        .exchange_declare(
            jobs.as_str().into(),
            ExchangeKind::Direct,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            dead.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;

    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), string("quorum"));
    channel
        .queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::durable(),
            quorum.clone(),
        )
        .await?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dead.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let mut work = quorum;
    work.insert("x-dead-letter-exchange".into(), string(&dead));
    for queue in QueueKind::ALL {
        let name = topology.queue(queue);
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::durable(),
                work.clone(),
            )
            .await?;
        for kind in JobKind::ALL.into_iter().filter(|k| k.queue() == queue) {
            channel
                .queue_bind(
                    name.as_str().into(),
                    jobs.as_str().into(),
                    kind.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok(())
}
