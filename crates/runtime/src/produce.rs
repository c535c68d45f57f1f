//! Producing from a handler: a [`ProduceHandler`] returns the records its source record leads
//! to, and the consumer writes them before the source record counts as done.
//!
//! The outputs go through the consumer's one producer, the one that writes dead letters and
//! diverted records ([`crate::sinks`]): idempotent with `acks=all`, and in exactly-once mode
//! transactional, so that outputs, dead letters, diversions and the consumed offsets commit
//! together. The adapter here turns a [`ProduceHandler`] into a plain [`Handler`] whose future
//! ends only once every output is acknowledged: the engine runs one record of a key at a time,
//! so the outputs of a key's records reach Kafka in the order of their sources, and a record
//! whose outputs are not all acknowledged fails (retried, then dead-lettered) rather than
//! completing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord};
use tokio::sync::oneshot;

use crate::sinks::{Delivery, SinkContext};
use crate::{Handler, HandlerError, Record};

/// A record for the consumer to produce on a handler's behalf (see [`ProduceHandler`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    topic: String,
    partition: Option<i32>,
    key: Option<Bytes>,
    payload: Option<Bytes>,
    headers: Vec<(String, Bytes)>,
}

impl Output {
    /// A record for `topic`, with no key, payload or headers yet. Without a partition, the
    /// producer's partitioner places it by its key, so one key's outputs share a partition.
    pub fn new(topic: impl Into<String>) -> Self {
        Output {
            topic: topic.into(),
            partition: None,
            key: None,
            payload: None,
            headers: Vec::new(),
        }
    }

    /// Its key: the producer's partitioner places it by this, so one key's outputs share a
    /// partition and keep their order there.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Its value.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = Some(payload.into());
        self
    }

    /// Adds a header (a name may repeat, as in Kafka).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Writes it to this partition rather than the one its key hashes to.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Processes one record and returns the records to produce for it (none is fine). Runs like a
/// [`Handler`] (a tokio task on the runtime of
/// [`Consumer::run_producing`](crate::Consumer::run_producing), never two for one key at once);
/// the source record completes only once Kafka has acknowledged every output. Failing to produce
/// one counts as a retriable failure of the source record: it runs again (its outputs are
/// produced again, so an at-least-once reader may see some twice) and is dead-lettered after the
/// configured attempts. In exactly-once mode ([`ConsumerBuilder::exactly_once`]) a reader with
/// `isolation.level=read_committed` sees each output once.
///
/// Any `Fn(Record) -> impl Future<Output = Result<Vec<Output>, HandlerError>>` is one.
///
/// [`ConsumerBuilder::exactly_once`]: crate::ConsumerBuilder::exactly_once
pub trait ProduceHandler: Send + Sync + 'static {
    /// Processes `record` and returns what to produce for it, in the order to produce it.
    fn handle(
        &self,
        record: Record,
    ) -> impl Future<Output = Result<Vec<Output>, HandlerError>> + Send;
}

impl<F, Fut> ProduceHandler for F
where
    F: Fn(Record) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Output>, HandlerError>> + Send + 'static,
{
    fn handle(
        &self,
        record: Record,
    ) -> impl Future<Output = Result<Vec<Output>, HandlerError>> + Send {
        self(record)
    }
}

/// A [`ProduceHandler`] as a [`Handler`]: produces what it returns and waits for the acks.
pub(crate) struct Producing<P> {
    inner: P,
    producer: Arc<BaseProducer<SinkContext>>,
}

impl<P: ProduceHandler> Producing<P> {
    pub(crate) fn new(inner: P, producer: Arc<BaseProducer<SinkContext>>) -> Self {
        Producing { inner, producer }
    }
}

impl<P: ProduceHandler> Handler for Producing<P> {
    fn handle(&self, record: Record) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let outputs = self.inner.handle(record);
        let producer = self.producer.clone();
        async move {
            let outputs = outputs.await?;
            // All sent before any is awaited: they travel in as few requests as the producer
            // can make of them, and in the order returned.
            let mut acks = Vec::with_capacity(outputs.len());
            for o in &outputs {
                acks.push(send(&producer, o).await?);
            }
            for ack in acks {
                match ack.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(HandlerError::retry(format!("producing: {e}"))),
                    Err(_) => return Err(HandlerError::retry("producing: the producer is gone")),
                }
            }
            Ok(())
        }
    }
}

/// How long a handler waits before offering an output again to a producer whose queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// Hands one output to the producer; waits while its queue is full. The receiver gets the
/// delivery report.
async fn send(
    producer: &BaseProducer<SinkContext>,
    o: &Output,
) -> Result<oneshot::Receiver<Result<(), KafkaError>>, HandlerError> {
    let mut headers = OwnedHeaders::new_with_capacity(o.headers.len());
    for (name, value) in &o.headers {
        headers = headers.insert(KafkaHeader {
            key: name,
            value: Some(value.as_ref()),
        });
    }
    loop {
        let (tx, rx) = oneshot::channel();
        let mut r: BaseRecord<'_, [u8], [u8], Box<Delivery>> =
            BaseRecord::with_opaque_to(&o.topic, Box::new(Delivery::Output(tx)))
                .headers(headers.clone());
        if let Some(p) = o.partition {
            r = r.partition(p);
        }
        if let Some(k) = &o.key {
            r = r.key(k.as_ref());
        }
        if let Some(v) = &o.payload {
            r = r.payload(v.as_ref());
        }
        match producer.send(r) {
            Ok(()) => return Ok(rx),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(QUEUE_FULL_WAIT).await;
            }
            Err((e, _)) => {
                return Err(HandlerError::retry(format!(
                    "producing to {}: {e}",
                    o.topic
                )))
            }
        }
    }
}
