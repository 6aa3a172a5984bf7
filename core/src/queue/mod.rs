//! RabbitMQ: the topology every process declares, and a publisher with confirms.
//!
//! Names live under the namespace (default `kiln`), so several deployments or test runs share
//! one broker without seeing each other's messages:
//!
//! - `<ns>.jobs`: a direct exchange; the routing key is the job kind.
//! - `<ns>.<queue>.dl<N>`: one durable quorum queue per [`QueueKind`], with a delivery limit of
//!   N, dead-lettering (at least once) to `<ns>.reconcile`.
//! - `<ns>.retry.<ms>ms`: the retry ladder, quorum queues with a fixed TTL that dead-letter (at
//!   least once) back to `<ns>.jobs`.
//! - `<ns>.reconcile`: what the broker dead-letters by itself; a worker buries the job's row and
//!   forwards the message to `<ns>.dead`.
//! - `<ns>.dead`: a fanout exchange and its queue, where dead jobs' messages rest with a reason.
//!
//! Queue arguments are part of the names, so a change declares new queues and the scheduler
//! retires the old ones (`kiln_scheduler::retire`).

mod connection;
mod outbox;
mod publisher;
mod topology;

pub use connection::{AmqpError, connect, is_not_found};
pub use outbox::{RecordPublished, publish_committed};
pub use publisher::{Publisher, QueueStats};
pub use topology::{Role, Topology, declare};
