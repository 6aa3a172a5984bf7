//! RabbitMQ: the topology every process declares, and a publisher with confirms.
//!
//! Names live under the namespace (default `kiln`), so several deployments or test runs share
//! one broker without seeing each other's messages:
//!
//! - `<ns>.jobs`: a direct exchange; the routing key is the job kind.
//! - `<ns>.<queue>`: one durable quorum queue per [`QueueKind`], dead-lettering to `<ns>.dead`.
//! - `<ns>.dead`: a fanout exchange and its queue, where rejected messages rest with a reason.

mod connection;
mod outbox;
mod publisher;
mod topology;

pub use connection::{AmqpError, connect};
pub use outbox::{RecordPublished, publish_committed};
pub use publisher::{Publisher, QueueStats};
pub use topology::{Topology, declare};
