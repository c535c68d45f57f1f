//! The API's side of Kafka: the topic, and an idempotent producer whose acknowledgement is what
//! the API waits for before it answers 200 — an acknowledged update is never lost.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
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

/// How the service's topic is replicated, as the broker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicReplicas {
    pub factor: i32,
    pub min_insync: i32,
}

impl TopicReplicas {
    /// Whether a write acknowledged by the broker can exist on one broker alone.
    pub fn single_copy(&self) -> bool {
        self.factor < 2 || self.min_insync < 2
    }
}

/// Creates the topic with `partitions` partitions and the configured replication unless it
/// exists, and reads back how it is replicated.
pub async fn ensure_topic(config: &Config) -> Result<TopicReplicas, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka_brokers);
    let admin: Arc<Admin> = Arc::new(c.create()?);
    let brokers = metadata(&admin, None).await?.brokers().len();
    let replication = config.replication().resolve(brokers);
    let topic = replication.new_topic(&config.topic, config.partitions);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &opts).await? {
        match result {
            Ok(_) => tracing::info!(
                topic = %config.topic,
                partitions = config.partitions,
                replication_factor = replication.factor,
                min_insync_replicas = replication.min_insync,
                "created topic"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    replicas(&admin, &config.topic).await
}

type Admin = AdminClient<DefaultClientContext>;

/// The cluster's metadata (of `topic` alone, if given), asked on a thread where the blocking
/// call stalls no task.
async fn metadata(admin: &Arc<Admin>, topic: Option<&str>) -> Result<Metadata, KafkaError> {
    let (admin, topic) = (Arc::clone(admin), topic.map(str::to_owned));
    tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(topic.as_deref(), METADATA_TIMEOUT)
    })
    .await
    .expect("a metadata request does not panic")
}

/// How long one metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The topic's replication factor (from its partitions' replica lists) and its effective
/// `min.insync.replicas` (from the broker's description of its configuration).
async fn replicas(admin: &Arc<Admin>, topic: &str) -> Result<TopicReplicas, KafkaError> {
    let factor = metadata(admin, Some(topic))
        .await?
        .topics()
        .first()
        .and_then(|t| t.partitions().iter().map(|p| p.replicas().len()).min())
        .ok_or(KafkaError::AdminOp(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ))?;
    let opts = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await?;
    let min_insync = described
        .into_iter()
        .flatten()
        .flat_map(|r| r.entries)
        .find(|e| e.name == "min.insync.replicas")
        .and_then(|e| e.value?.parse().ok())
        .ok_or(KafkaError::AdminOp(RDKafkaErrorCode::InvalidConfig))?;
    Ok(TopicReplicas {
        factor: i32::try_from(factor).unwrap_or(i32::MAX),
        min_insync,
    })
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
