//! What the consumer runs for each record.

use std::fmt;
use std::future::Future;

use crate::Record;

/// How a handler failed, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Try again with back-off; dead-letter after the configured attempts.
    Retry,
    /// A dependency is down (database unreachable, timeout): try again with back-off for as long
    /// as it takes, without using up attempts. Nothing is dead-lettered because of an outage.
    Transient,
    /// The record can never succeed (malformed, refers to something that does not exist):
    /// dead-letter it now.
    Fatal,
    /// The attempt ran past the handler timeout
    /// ([`ConsumerBuilder::handler_timeout`](crate::ConsumerBuilder::handler_timeout)): counted
    /// like [`FailureKind::Retry`], and a record whose last attempt timed out is dead-lettered
    /// with the reason `timeout`.
    TimedOut,
}

/// A handler's error: a kind and a message for the logs and the dead-letter headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// What happens next: retry, wait out an outage, or dead-letter.
    pub kind: FailureKind,
    /// For the log and the dead-letter record's `kafkaesque.error` header.
    pub message: String,
    /// For [`FailureKind::Fatal`]: the short code written to the dead-letter record's
    /// `kafkaesque.reason` header (`fatal` unless the handler says better).
    pub reason: &'static str,
}

impl HandlerError {
    /// A failure that may pass: retried with back-off, dead-lettered (reason `max_attempts`)
    /// once the attempts are spent.
    pub fn retry(message: impl fmt::Display) -> Self {
        Self::new(FailureKind::Retry, "max_attempts", message)
    }

    /// A dependency is down: retried for as long as it takes, using up no attempts.
    pub fn transient(message: impl fmt::Display) -> Self {
        Self::new(FailureKind::Transient, "transient", message)
    }

    /// The record can never succeed: dead-lettered now, with reason `fatal`.
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self::new(FailureKind::Fatal, "fatal", message)
    }

    /// The attempt took longer than `limit` (made by the consumer when a handler times out).
    pub fn timed_out(limit: std::time::Duration) -> Self {
        Self::new(
            FailureKind::TimedOut,
            "timeout",
            format!("the handler ran past its timeout of {limit:?}"),
        )
    }

    /// A fatal error with a dead-letter reason code of its own, e.g. `unknown_player`.
    pub fn rejected(reason: &'static str, message: impl fmt::Display) -> Self {
        Self::new(FailureKind::Fatal, reason, message)
    }

    fn new(kind: FailureKind, reason: &'static str, message: impl fmt::Display) -> Self {
        HandlerError {
            kind,
            message: message.to_string(),
            reason,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for HandlerError {}

/// Processes one record. Runs as a tokio task on the runtime that called
/// [`Consumer::run`](crate::Consumer::run); many run at once (up to the configured concurrency),
/// but never two for the same ordering key. Blocking before the first `.await` blocks only the
/// tokio worker it runs on, never the consumer's polling — unless the consumer was built with
/// [`ConsumerBuilder::inline_first_poll`](crate::ConsumerBuilder::inline_first_poll).
///
/// Any `Fn(Record) -> impl Future<Output = Result<(), HandlerError>>` is a handler.
pub trait Handler: Send + Sync + 'static {
    /// Processes `record`; `Ok` completes it (its offset may then be committed), an `Err` says
    /// what should happen next (see [`FailureKind`]).
    fn handle(&self, record: Record) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Record) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, record: Record) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(record)
    }
}

/// A payload that is not the JSON a handler asked for never will be: dead-letter it now, with
/// the reason `malformed` and the record named in the message.
#[cfg(feature = "serde")]
impl From<crate::JsonError> for HandlerError {
    fn from(e: crate::JsonError) -> Self {
        HandlerError::rejected("malformed", e)
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::{FailureKind, HandlerError};
    use crate::{Record, RecordData};

    #[test]
    fn a_payload_that_is_not_the_json_asked_for_is_dead_lettered_at_once() {
        let record = Record::from(RecordData {
            topic: "orders".into(),
            partition: 2,
            offset: 9,
            key: None,
            payload: Some(bytes::Bytes::from_static(b"{oops")),
            headers: Vec::new().into(),
            timestamp: None,
        });
        let e: HandlerError = record.json::<u32>().unwrap_err().into();
        assert_eq!((e.kind, e.reason), (FailureKind::Fatal, "malformed"));
        assert!(e.message.contains("orders/2@9"), "{}", e.message);
    }
}
