//! Acks of one channel, coalesced with `multiple`.
//!
//! On a quorum queue every ack frame becomes a command in the queue's replicated log, so one
//! frame per job is a real cost at thousands of jobs per second. A job still acks only once its
//! outcome is committed; what changes is that the acks of jobs finished while the previous frame
//! was being sent go together, as one `basic.ack` with `multiple` for the highest of them.
//!
//! `multiple` acks every unsettled delivery up to its tag, so it may only cover tags that are
//! all finished: the tags below the oldest delivery still running. A job that finishes ahead of
//! an older one still running is acked alone, at once; nothing waits behind a slow job. Nor may
//! it cover a tag not registered yet: deliveries of the channel's several consumers reach the
//! coalescer in the order their streams are polled, not always in tag order, so a frame covers
//! only tags below the first one not seen (the broker numbers a channel's deliveries 1, 2, 3…).

use std::collections::{BTreeMap, BTreeSet};

use lapin::{Acker, options::BasicAckOptions};
use tokio::sync::{mpsc, oneshot};

use crate::consumer::SETTLE_TIMEOUT;

enum Event {
    /// A delivery arrived (sent in delivery order, before its job starts).
    Delivered(u64),
    /// Its job's outcome is recorded: ack it, then answer.
    Done(u64, Acker, oneshot::Sender<()>),
    /// Settled some other way (a nack, already sent).
    Settled(u64),
}

/// The channel's ack coalescer; its task ends when every handle is dropped.
#[derive(Clone)]
pub struct Acks {
    events: mpsc::UnboundedSender<Event>,
}

impl Acks {
    /// Starts the coalescing task for one channel.
    pub fn spawn() -> Self {
        let (events, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(receiver));
        Self { events }
    }

    /// Records a delivery; call in delivery order, before its job runs.
    pub fn delivered(&self, tag: u64) {
        let _ = self.events.send(Event::Delivered(tag));
    }

    /// Acks the delivery and returns once the ack is on its way to the broker.
    pub async fn ack(&self, tag: u64, acker: Acker) {
        let (sent, done) = oneshot::channel();
        if self
            .events
            .send(Event::Done(tag, acker.clone(), sent))
            .is_err()
        {
            // The coalescer is gone (cannot happen while a handle lives): ack alone.
            ack_alone(&acker).await;
            return;
        }
        let _ = done.await;
    }

    /// Records a delivery settled without this coalescer (nacked).
    pub fn settled(&self, tag: u64) {
        let _ = self.events.send(Event::Settled(tag));
    }
}

async fn run(mut events: mpsc::UnboundedReceiver<Event>) {
    let mut running = BTreeSet::new();
    // Every tag below `unseen` has been registered; `seen_ahead` holds those above a gap.
    let mut unseen: u64 = 1;
    let mut seen_ahead = BTreeSet::new();
    let mut finished: BTreeMap<u64, (Acker, oneshot::Sender<()>)> = BTreeMap::new();
    let mut batch = Vec::new();
    while events.recv_many(&mut batch, 4096).await > 0 {
        for event in batch.drain(..) {
            match event {
                Event::Delivered(tag) => {
                    running.insert(tag);
                    seen_ahead.insert(tag);
                    while seen_ahead.remove(&unseen) {
                        unseen += 1;
                    }
                }
                Event::Done(tag, acker, sent) => {
                    running.remove(&tag);
                    finished.insert(tag, (acker, sent));
                }
                Event::Settled(tag) => {
                    running.remove(&tag);
                }
            }
        }
        // Everything finished below the oldest running delivery (and below any tag not seen
        // yet) goes in one frame.
        let oldest_running = running.first().copied().unwrap_or(u64::MAX).min(unseen);
        let later = finished.split_off(&oldest_running);
        let below = std::mem::replace(&mut finished, later);
        if let Some((_, (acker, _))) = below.last_key_value() {
            let acked = tokio::time::timeout(
                SETTLE_TIMEOUT,
                acker.ack(BasicAckOptions { multiple: true }),
            )
            .await;
            report(acked, below.len());
        }
        // Finished ahead of an older running one: alone, now.
        for (acker, _) in finished.values() {
            ack_alone(acker).await;
        }
        for (_, sent) in below
            .into_values()
            .chain(std::mem::take(&mut finished).into_values())
        {
            let _ = sent.send(());
        }
    }
}

async fn ack_alone(acker: &Acker) {
    let acked = tokio::time::timeout(SETTLE_TIMEOUT, acker.ack(BasicAckOptions::default())).await;
    report(acked, 1);
}

fn report(acked: Result<lapin::Result<bool>, tokio::time::error::Elapsed>, count: usize) {
    match acked {
        Ok(Ok(_)) => {}
        // The job rows already hold the outcomes; the broker redelivers these messages and the
        // rows make the redeliveries no-ops.
        Ok(Err(error)) => tracing::warn!(%error, count, "could not ack"),
        Err(_) => tracing::warn!(count, "acking timed out"),
    }
}
