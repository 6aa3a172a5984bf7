//! Names and declarations of exchanges and queues.

use std::time::Duration;

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
    delays: Vec<Duration>,
}

impl Topology {
    /// Names under `namespace`, with the retry ladder `delays`.
    pub fn new(namespace: &str, delays: &[Duration]) -> Self {
        Self {
            namespace: namespace.to_owned(),
            delays: delays.to_vec(),
        }
    }

    /// The retry ladder.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The delay exchange (and queue) for the retry after attempt `attempt` (1-based): the
    /// ladder's step, the last step repeating.
    pub fn delay_for_attempt(&self, attempt: i32) -> (String, Duration) {
        let step = usize::try_from(attempt.max(1) - 1).unwrap_or(0);
        let delay = self.delays[step.min(self.delays.len() - 1)];
        (self.delay(delay), delay)
    }

    /// A delay queue's (and its exchange's) name. Named by the delay itself, so changing the
    /// ladder declares new queues instead of clashing with the TTL of existing ones.
    pub fn delay(&self, delay: Duration) -> String {
        format!("{}.delay.{}ms", self.namespace, delay.as_millis())
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
        names.extend(self.delays.iter().map(|d| self.delay(*d)));
        names
    }

    /// Every exchange name.
    pub fn all_exchanges(&self) -> Vec<String> {
        let mut names = vec![self.jobs_exchange(), self.dead()];
        names.extend(self.delays.iter().map(|d| self.delay(*d)));
        names
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

    // The retry ladder: a message published to a delay exchange waits in its queue for the
    // queue's fixed TTL, then is dead-lettered back to the jobs exchange with its original
    // routing key (the job kind). A fixed TTL per queue, unlike per-message TTLs, expires
    // messages in order, so none waits behind a longer one.
    for delay in topology.delays() {
        let name = topology.delay(*delay);
        channel
            .exchange_declare(
                name.as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange(),
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
        );
        arguments.insert("x-dead-letter-exchange".into(), string(&jobs));
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await?;
        channel
            .queue_bind(
                name.as_str().into(),
                name.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }

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
