//! Names and declarations of exchanges and queues.

use std::time::Duration;

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};

use crate::jobs::{JobKind, QueueKind};

/// The names of everything in one namespace.
///
/// A queue's arguments can never change under its name: the broker refuses to redeclare a
/// queue with other arguments (`PRECONDITION_FAILED`), which would stop every process at start.
/// So the arguments that may change are part of the names (the delivery limit of a work queue,
/// the delay of a retry queue), and a change declares new queues while the scheduler drains and
/// deletes the old ones (see [`Topology::legacy`] and `kiln_scheduler::retire`).
#[derive(Debug, Clone)]
pub struct Topology {
    namespace: String,
    delays: Vec<Duration>,
    delivery_limit: u32,
}

/// What a queue is for, which says how a retired one is drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Consumed by workers: messages are moved to the jobs exchange.
    Work,
    /// A retry queue: its messages expire to the jobs exchange by themselves.
    Delay,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Work => "work",
            Self::Delay => "delay",
        }
    }

    pub fn parse(role: &str) -> Option<Self> {
        match role {
            "work" => Some(Self::Work),
            "delay" => Some(Self::Delay),
            _ => None,
        }
    }
}

impl Topology {
    /// Names under `namespace`, with the retry ladder `delays` and the work queues' delivery
    /// limit.
    pub fn new(namespace: &str, delays: &[Duration], delivery_limit: u32) -> Self {
        Self {
            namespace: namespace.to_owned(),
            delays: delays.to_vec(),
            delivery_limit,
        }
    }

    /// The retry ladder.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// How often the broker hands out one message of a work queue before dead-lettering it.
    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    /// The delay exchange (and queue) for the retry after attempt `attempt` (1-based): the
    /// ladder's step, the last step repeating.
    pub fn delay_for_attempt(&self, attempt: i32) -> (String, Duration) {
        let step = usize::try_from(attempt.max(1) - 1).unwrap_or(0);
        let delay = self.delays[step.min(self.delays.len() - 1)];
        (self.delay(delay), delay)
    }

    /// A retry queue's (and its exchange's) name. Named by the delay itself, so changing the
    /// ladder declares new queues instead of clashing with the TTL of existing ones.
    pub fn delay(&self, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.namespace, delay.as_millis())
    }

    /// The exchange jobs are published to.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.namespace)
    }

    /// The queue of one kind of work, named with its delivery limit.
    pub fn queue(&self, queue: QueueKind) -> String {
        format!(
            "{}.{}.dl{}",
            self.namespace,
            queue.as_str(),
            self.delivery_limit
        )
    }

    /// Where the work queues dead-letter (exchange and queue share the name): what the broker
    /// gives up on by itself reaches a worker, which buries the job's row before forwarding the
    /// message to [`Self::dead`].
    pub fn reconcile(&self) -> String {
        format!("{}.reconcile", self.namespace)
    }

    /// Where dead jobs' messages rest with their reason (exchange and queue share the name).
    pub fn dead(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    /// The work and retry queues this topology declares, with their roles: what a scheduler
    /// records, so that a later topology knows what to retire.
    pub fn declared(&self) -> Vec<(String, Role)> {
        let mut names: Vec<_> = QueueKind::ALL
            .iter()
            .map(|q| (self.queue(*q), Role::Work))
            .collect();
        names.extend(self.delays.iter().map(|d| (self.delay(*d), Role::Delay)));
        names
    }

    /// The queues of the first topology (before names carried their arguments): work queues
    /// without a delivery limit and classic retry queues, which at-most-once dead-lettering
    /// could lose a message from. Kiln retires them wherever they still exist.
    pub fn legacy(&self) -> Vec<(String, Role)> {
        let mut names: Vec<_> = QueueKind::ALL
            .iter()
            .map(|q| (format!("{}.{}", self.namespace, q.as_str()), Role::Work))
            .collect();
        names.extend(self.delays.iter().map(|d| {
            (
                format!("{}.delay.{}ms", self.namespace, d.as_millis()),
                Role::Delay,
            )
        }));
        names
    }

    /// Every queue name, for operators and for tests that clean up.
    pub fn all_queues(&self) -> Vec<String> {
        let mut names: Vec<_> = self.declared().into_iter().map(|(n, _)| n).collect();
        names.push(self.reconcile());
        names.push(self.dead());
        names.extend(self.legacy().into_iter().map(|(n, _)| n));
        names
    }

    /// Every exchange name.
    pub fn all_exchanges(&self) -> Vec<String> {
        let mut names = vec![self.jobs_exchange(), self.reconcile(), self.dead()];
        names.extend(self.delays.iter().map(|d| self.delay(*d)));
        names.extend(
            self.legacy()
                .into_iter()
                .filter(|(_, role)| *role == Role::Delay)
                .map(|(n, _)| n),
        );
        names
    }
}

/// How often the reconcile queue hands out one message before it goes to the dead queue.
const RECONCILE_DELIVERY_LIMIT: i64 = 20;

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Arguments every Kiln quorum queue that dead-letters shares: dead-lettering is
/// at-least-once (the broker keeps a message until the target queue has confirmed it, where
/// at-most-once could drop it on a node failure), which RabbitMQ allows only with the
/// `reject-publish` overflow.
fn dead_lettering_to(exchange: &str) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), string("quorum"));
    arguments.insert("x-dead-letter-exchange".into(), string(exchange));
    arguments.insert("x-dead-letter-strategy".into(), string("at-least-once"));
    arguments.insert("x-overflow".into(), string("reject-publish"));
    arguments
}

/// A fanout exchange and a durable queue of the same name bound to it.
async fn fanout_queue(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
        .await?;
    channel
        .queue_bind(
            name.into(),
            name.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Declares the whole topology; idempotent, so every process does it at start and after a
/// reconnect.
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<(), lapin::Error> {
    let jobs = topology.jobs_exchange();
    let dead = topology.dead();
    let reconcile = topology.reconcile();
    let delivery_limit = AMQPValue::LongLongInt(i64::from(topology.delivery_limit()));
    channel
        .exchange_declare(
            jobs.as_str().into(),
            ExchangeKind::Direct,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;

    // The end of the line: operators inspect, retry or discard what rests here.
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), string("quorum"));
    fanout_queue(channel, &dead, quorum).await?;

    // What the work queues dead-letter; a worker reconciles each message with its row. If even
    // that fails this often, the message goes on to the dead queue. A constant, unlike the work
    // queues' limit, since this queue's name does not change with `KILN_DELIVERY_LIMIT`.
    let mut arguments = dead_lettering_to(&dead);
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(RECONCILE_DELIVERY_LIMIT),
    );
    fanout_queue(channel, &reconcile, arguments).await?;

    // The retry ladder: a message published to a delay exchange waits in its queue for the
    // queue's fixed TTL, then is dead-lettered back to the jobs exchange with its original
    // routing key (the job kind). A fixed TTL per queue, unlike per-message TTLs, expires
    // messages in order, so none waits behind a longer one.
    for delay in topology.delays() {
        let mut arguments = dead_lettering_to(&jobs);
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
        );
        fanout_queue(channel, &topology.delay(*delay), arguments).await?;
    }

    // An explicit delivery limit: RabbitMQ 3.x has none by default (a message that crashes
    // every worker loops for ever), 4.x defaults to 20 and drops or dead-letters behind the
    // rows' back; here both dead-letter to the reconcile queue.
    let mut work = dead_lettering_to(&reconcile);
    work.insert("x-delivery-limit".into(), delivery_limit);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(limit: u32) -> Topology {
        Topology::new(
            "kiln",
            &[Duration::from_secs(1), Duration::from_secs(5)],
            limit,
        )
    }

    #[test]
    fn arguments_that_may_change_are_in_the_names() {
        assert_eq!(topology(20).queue(QueueKind::Media), "kiln.media.dl20");
        assert_eq!(topology(3).queue(QueueKind::Media), "kiln.media.dl3");
        assert_eq!(
            topology(20).delay(Duration::from_secs(5)),
            "kiln.retry.5000ms"
        );
        assert_eq!(topology(20).delay_for_attempt(9).0, "kiln.retry.5000ms");
    }

    #[test]
    fn the_first_topologys_names_are_never_declared_again() {
        let topology = topology(20);
        let declared: Vec<_> = topology.declared().into_iter().map(|(n, _)| n).collect();
        let legacy = topology.legacy();
        assert!(legacy.contains(&("kiln.media".to_owned(), Role::Work)));
        assert!(legacy.contains(&("kiln.delay.1000ms".to_owned(), Role::Delay)));
        for (name, _) in &legacy {
            assert!(!declared.contains(name), "{name}");
            assert!(topology.all_queues().contains(name), "{name} is cleaned up");
        }
        assert!(!declared.contains(&topology.dead()));
        assert!(!declared.contains(&topology.reconcile()));
    }
}
