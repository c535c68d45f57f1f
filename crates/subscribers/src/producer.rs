//! The API's side of Kafka: the topic, and an idempotent producer whose acknowledgement is what
//! the API waits for before it answers 200 — an acknowledged update is never lost.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::message::Message;
use crate::{Config, Result};

/// How long a write may wait in the producer's queue for the broker before the request fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Consecutive writes the broker refuses before the producer is replaced (see [`Streak`]).
const REPLACE_AFTER: u32 = 20;

/// A handle on the producer, cheap to clone.
#[derive(Clone)]
pub struct Producer {
    /// The producer and its generation: the outcomes of writes sent by a producer that has
    /// since been replaced do not count against its successor.
    inner: Arc<RwLock<(u64, FutureProducer)>>,
    config: ClientConfig,
    streak: Arc<Mutex<Streak>>,
    topic: String,
}

/// Counts the writes the broker refused in a row, to tell when the producer itself is stuck.
///
/// **Why replace a producer.** The idempotent producer keeps a producer id, an epoch and a
/// sequence number per partition, and the broker checks them. When writes time out (a frozen
/// broker), librdkafka bumps the epoch; the local broker, nisshi 0.6.0 on PostgreSQL storage,
/// then refuses every later write of that producer with an unknown error, for good — found by
/// the chaos run (`docs/chaos.md`): the API answered 503 to every update of the affected
/// partitions until it was restarted. A new producer gets a new id from the broker and writes
/// again. Timeouts and a full queue are not counted: they mean the broker is away, which a new
/// producer does not change.
#[derive(Debug, Default)]
pub struct Streak {
    refused: u32,
}

impl Streak {
    /// Records one write's outcome; `true` when the producer should be replaced now.
    pub fn record(&mut self, outcome: Result<(), &KafkaError>) -> bool {
        match outcome {
            Ok(()) => self.refused = 0,
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::QueueFull,
            )) => {}
            Err(_) => self.refused += 1,
        }
        if self.refused >= REPLACE_AFTER {
            self.refused = 0;
            return true;
        }
        false
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Producer {
    pub fn new(config: &Config) -> Result<Self> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.kafka_brokers)
            // Acknowledged by every in-sync replica, without duplicates or reordering on retry.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            );
        for (k, v) in &config.producer_properties {
            c.set(k, v);
        }
        Ok(Producer {
            inner: Arc::new(RwLock::new((0, c.create()?))),
            config: c,
            streak: Arc::default(),
            topic: config.topic.clone(),
        })
    }

    /// Writes `message` keyed by its app and waits for the broker's acknowledgement.
    pub async fn send(&self, message: &Message) -> Result<(i32, i64), KafkaError> {
        let key = message.app_id().to_string();
        let payload = message.to_bytes();
        let record = FutureRecord::to(&self.topic)
            .key(key.as_bytes())
            .payload(&payload[..]);
        let (generation, producer) = self.inner.read().expect("producer lock").clone();
        let sent = producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e);
        let mut streak = self.streak.lock().expect("streak lock");
        let current = self.inner.read().expect("producer lock").0 == generation;
        if current && streak.record(sent.as_ref().map(|_| ())) {
            self.replace(generation + 1, sent.as_ref().err());
        }
        sent
    }

    /// Swaps in a new producer (a new producer id); writes in flight finish on the old one.
    fn replace(&self, generation: u64, last: Option<&KafkaError>) {
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                *self.inner.write().expect("producer lock") = (generation, fresh);
                metrics::counter!("subscribers_producer_replacements_total").increment(1);
                tracing::warn!(
                    refused = REPLACE_AFTER,
                    error = ?last,
                    "the broker refused this producer's writes again and again; replaced it"
                );
            }
            Err(error) => tracing::error!(%error, "cannot create a replacement producer"),
        }
    }
}

/// Creates the topic with `partitions` partitions unless it exists.
pub async fn ensure_topic(config: &Config) -> Result<(), KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka_brokers);
    let admin: AdminClient<DefaultClientContext> = c.create()?;
    let topic = NewTopic::new(&config.topic, config.partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &opts).await? {
        match result {
            Ok(_) => {
                tracing::info!(topic = %config.topic, partitions = config.partitions, "created topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_of_refusals_asks_for_a_new_producer_and_timeouts_or_a_success_do_not() {
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::Unknown);
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        let mut s = Streak::default();
        for _ in 0..REPLACE_AFTER - 1 {
            assert!(!s.record(Err(&refused)));
        }
        assert!(
            !s.record(Err(&timed_out)),
            "a timeout neither counts nor resets"
        );
        assert!(s.record(Err(&refused)), "the twentieth refusal in a row");
        assert!(
            !s.record(Err(&refused)),
            "counting starts again after a replacement"
        );
        for _ in 0..REPLACE_AFTER - 2 {
            s.record(Err(&refused));
        }
        assert!(!s.record(Ok(())), "a success resets the count");
        assert!(!s.record(Err(&refused)));
    }
}
