//! The runtime's errors.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// The runtime's results: its [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop a consumer from being built or from running. Handler failures are not here:
/// they are retried or dead-lettered, never returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration mistake, naming the field (or librdkafka property) at fault.
    #[error("invalid consumer configuration: `{field}`: {problem}")]
    Config {
        /// The builder method or librdkafka property at fault.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The Kafka client failed in a way the consumer cannot recover from.
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What the consumer was doing.
        context: &'static str,
        /// rdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The broker refused the client's login, or the TLS handshake with it failed: wrong
    /// credentials, SASL mechanism or CA. librdkafka would retry for ever; the consumer stops
    /// instead. librdkafka's log names the cause (never the password).
    #[error("kafka: {context}: the broker refused the connection: {reason} (check security.protocol, sasl.* and ssl.*; the log says more)")]
    Refused {
        /// What the consumer was doing.
        context: &'static str,
        /// librdkafka's error code, as text (authentication or SSL).
        reason: String,
    },
    /// Exactly-once mode: a transaction could not commit and was aborted; the consumer stopped.
    /// A restarted consumer resumes from the last committed transaction.
    #[error("exactly-once: transaction aborted: {0}")]
    Transaction(String),
    /// The consumer's driver thread stopped unexpectedly.
    #[error("the consumer driver stopped: {0}")]
    Driver(String),
}

/// A refused login or TLS handshake (wrong credentials, SASL mechanism or CA) that librdkafka
/// reported on `client`, if any: librdkafka retries such a connection for ever, and its requests
/// then fail only as timeouts or transport failures. It reports the refusal as an error event on
/// the client's queue, which this polls (for a consumer with neither subscription nor
/// assignment, polling takes no records); its log says more, never the password.
pub fn login_refused<C: ConsumerContext>(client: &BaseConsumer<C>) -> Option<RDKafkaErrorCode> {
    while let Some(polled) = client.poll(Duration::ZERO) {
        if let Err(
            KafkaError::MessageConsumption(code) | KafkaError::MessageConsumptionFatal(code),
        ) = polled
        {
            if matches!(
                code,
                RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL
            ) {
                return Some(code);
            }
        }
    }
    None
}

/// Why an [`AssignHook`](crate::AssignHook) could not get ready for its partitions (the
/// database it reads is down). The partitions stay held and the hook is called again after a
/// back-off; the message and its cause go to the log.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AssignError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl AssignError {
    /// An error with this message and no underlying cause.
    pub fn new(message: impl std::fmt::Display) -> Self {
        AssignError {
            message: message.to_string(),
            source: None,
        }
    }

    /// An error with this message, caused by `source` (the database's error, a timeout).
    pub fn caused_by(
        message: impl std::fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        AssignError {
            message: message.to_string(),
            source: Some(source.into()),
        }
    }
}

impl Error {
    pub(crate) fn config(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> Self {
        move |source| Error::Kafka { context, source }
    }
}
