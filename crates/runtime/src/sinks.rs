//! The dead-letter and overflow producer. Idempotent, so that a retried produce never writes a
//! record twice or out of order within a partition — which the overflow's per-key order relies
//! on. A record handed to a sink completes only when its delivery is acknowledged.
//!
//! The same producer writes the records handlers return (see [`crate::produce`]), and in
//! exactly-once mode it is transactional: everything it writes commits with the consumed
//! offsets (see [`crate::transaction`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesque_engine::{SinkId, SinkRecord};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;
use tracing::{error, warn};

use crate::callbacks::{forward_user_callbacks, UserCallbacks};
use crate::clients::{client_config, Role};
use crate::config::ConsumerConfig;
use crate::events::{Event, EventTx};
use crate::record::headers;
use crate::{Error, Record, Result};
use rdkafka::error::KafkaError;
use tokio::sync::oneshot;

/// What a delivery report of the consumer's producer is about: a dead letter or diversion (the
/// driver hears of it as an event) or a handler's output (its handler is waiting for it).
pub(crate) enum Delivery {
    Sink(SinkId),
    Output(oneshot::Sender<Result<(), KafkaError>>),
}

/// Forwards deliveries to the driver, and those of handlers' outputs to their handlers. Runs
/// inside [`Sinks::poll`], on the driver thread.
pub(crate) struct SinkContext {
    tx: std::sync::Mutex<EventTx>,
    user: UserCallbacks,
}

impl ClientContext for SinkContext {
    forward_user_callbacks!();
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        let id = match *delivery {
            Delivery::Sink(id) => id,
            Delivery::Output(ack) => {
                let _ = ack.send(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
                return;
            }
        };
        let event = match result {
            Ok(m) => Event::Delivered {
                id,
                offset: m.offset(),
            },
            Err((e, _)) => Event::DeliveryFailed {
                id,
                error: e.to_string(),
            },
        };
        let _ = self.tx.lock().expect("sink channel lock").send(event);
    }
}

/// Where a sink record goes, kept until acknowledged so that a failed produce is sent again.
struct Pending {
    topic: String,
    partition: Option<i32>,
    key: Option<bytes::Bytes>,
    payload: Option<bytes::Bytes>,
    headers: rdkafka::message::OwnedHeaders,
    retry_at: Option<Instant>,
}

/// The producer is polled by the driver loop itself rather than by a thread of its own: a
/// polling thread would spend CPU the handlers need, for a producer that is idle nearly always.
pub(crate) struct Sinks {
    /// Shared with the handlers that produce (see [`crate::produce`]).
    producer: Arc<BaseProducer<SinkContext>>,
    pending: HashMap<SinkId, Pending>,
    /// `kafkaesque_sink_failures_total`, with the consumer's labels.
    pub(crate) failures: metrics::Counter,
}

impl Sinks {
    /// `transactional_id`: in exactly-once mode, the producer's `transactional.id`.
    pub(crate) fn new(
        cfg: &ConsumerConfig,
        transactional_id: Option<&str>,
        tx: EventTx,
    ) -> Result<Self> {
        let mut c = client_config(cfg, Role::Sinks);
        if let Some(id) = transactional_id {
            c.set("transactional.id", id);
        }
        let producer = c
            .create_with_context(SinkContext {
                tx: std::sync::Mutex::new(tx),
                user: cfg.callbacks.clone(),
            })
            .map_err(Error::kafka("creating the dead-letter/overflow producer"))?;
        Ok(Sinks {
            producer: Arc::new(producer),
            pending: HashMap::new(),
            failures: metrics::Counter::noop(),
        })
    }

    /// The producer, for handlers' outputs and transactions.
    pub(crate) fn producer(&self) -> &Arc<BaseProducer<SinkContext>> {
        &self.producer
    }

    /// Serves delivery reports: a sink's arrive as events on the driver's channel, an output's
    /// goes to its handler.
    pub(crate) fn poll(&self) {
        if !self.pending.is_empty() || self.producer.in_flight_count() > 0 {
            self.producer.poll(Duration::ZERO);
        }
    }

    /// Items waiting for a delivery report.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sends a dead-lettered item to `<topic><suffix>`, keeping its key, value and headers and
    /// adding where it came from and why it failed.
    pub(crate) fn dead_letter(&mut self, r: SinkRecord<Record>, suffix: &str) {
        let rec = &r.payload;
        let extra = source_headers(rec, r.tp.partition, r.offset)
            .into_iter()
            .chain([
                (headers::REASON, r.reason.to_owned()),
                (
                    headers::ERROR,
                    r.error.clone().unwrap_or_else(|| r.reason.to_owned()),
                ),
                (headers::ATTEMPTS, r.attempts.to_string()),
            ])
            .collect::<Vec<_>>();
        let pending = Pending {
            topic: format!("{}{suffix}", r.tp.topic),
            partition: None,
            key: rec.key_bytes().cloned(),
            payload: rec.payload_bytes().cloned(),
            headers: rec.data().owned_headers(&extra),
            retry_at: None,
        };
        self.send(r.id, pending);
    }

    /// Sends a diverted item to the same partition of `<topic><suffix>`, keyed by its ordering
    /// key, so that one key's items stay in order there.
    pub(crate) fn divert(&mut self, r: SinkRecord<Record>, suffix: &str) {
        let rec = &r.payload;
        let mut extra = source_headers(rec, r.tp.partition, r.offset);
        if let Some(k) = rec.key() {
            extra.push((headers::SOURCE_KEY, String::from_utf8_lossy(k).into_owned()));
        }
        let pending = Pending {
            topic: format!("{}{suffix}", r.tp.topic),
            partition: Some(r.tp.partition),
            key: rec.route().cloned(),
            payload: rec.payload_bytes().cloned(),
            headers: rec.data().owned_headers(&extra),
            retry_at: None,
        };
        self.send(r.id, pending);
    }

    fn send(&mut self, id: SinkId, p: Pending) {
        let mut record: BaseRecord<'_, [u8], [u8], Box<Delivery>> =
            BaseRecord::with_opaque_to(&p.topic, Box::new(Delivery::Sink(id)))
                .headers(p.headers.clone());
        if let Some(part) = p.partition {
            record = record.partition(part);
        }
        if let Some(k) = &p.key {
            record = record.key(k.as_ref());
        }
        if let Some(v) = &p.payload {
            record = record.payload(v.as_ref());
        }
        if let Err((e, _)) = self.producer.send(record) {
            warn!(topic = %p.topic, error = %e, "sink produce refused; retrying in 1 s");
            self.pending.insert(
                id,
                Pending {
                    retry_at: Some(Instant::now() + Duration::from_secs(1)),
                    ..p
                },
            );
            return;
        }
        self.pending.insert(id, p);
    }

    /// A delivery report arrived: forget the item, or schedule it again if it failed.
    pub(crate) fn delivered(&mut self, id: SinkId) {
        self.pending.remove(&id);
    }

    /// A delivery failed. Sent again in a second while `live` (its partition is still ours);
    /// otherwise the next owner replays its record and it is dropped here.
    pub(crate) fn failed(&mut self, id: SinkId, err: &str, live: bool) {
        if !live {
            self.pending.remove(&id);
            return;
        }
        if let Some(p) = self.pending.get_mut(&id) {
            error!(topic = %p.topic, partition = ?p.partition, error = %err, "sink delivery failed; retrying in 1 s");
            self.failures.increment(1);
            p.retry_at = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// Sends again what failed and is due.
    pub(crate) fn retry_due(&mut self, now: Instant) {
        let due: Vec<SinkId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.retry_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = self.pending.remove(&id) {
                self.send(
                    id,
                    Pending {
                        retry_at: None,
                        ..p
                    },
                );
            }
        }
    }

    pub(crate) fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

fn source_headers(rec: &Record, partition: i32, offset: i64) -> Vec<(&'static str, String)> {
    let mut v = vec![
        (headers::SOURCE_TOPIC, rec.topic().to_string()),
        (headers::SOURCE_PARTITION, partition.to_string()),
        (headers::SOURCE_OFFSET, offset.to_string()),
    ];
    if let Some(ts) = rec.timestamp() {
        v.push((headers::SOURCE_TIMESTAMP, ts.to_string()));
    }
    v
}
