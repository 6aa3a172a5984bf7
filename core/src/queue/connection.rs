//! Connecting to RabbitMQ.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};

/// Broker failures as Kiln reports them.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("rabbitmq: {0}")]
    Protocol(#[from] lapin::Error),
    #[error("rabbitmq: {0} timed out")]
    Timeout(&'static str),
    #[error("rabbitmq: the broker refused (nacked) the message")]
    Nacked,
    #[error("rabbitmq: {0}")]
    Closed(&'static str),
}

/// How long a connect may take before it counts as a failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection named after the process (visible in the management UI).
pub async fn connect(url: &SecretString, name: &str) -> Result<Connection, AmqpError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(url.expose_secret(), properties),
    )
    .await
    .map_err(|_| AmqpError::Timeout("connect"))?
    .map_err(AmqpError::from)
}

/// Whether the broker answered that the queue or exchange does not exist (404 NOT_FOUND).
pub fn is_not_found(error: &lapin::Error) -> bool {
    use lapin::{
        ErrorKind,
        protocol::{AMQPErrorKind, AMQPSoftError},
    };
    matches!(
        error.kind(),
        ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}
