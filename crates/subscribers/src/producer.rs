//! The API's side of Kafka: the topic, and an idempotent producer whose acknowledgement is what
//! the API waits for before it answers 200 — an acknowledged update is never lost.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::message::Message;
use crate::{Config, Result};

/// A handle on the producer, cheap to clone.
#[derive(Clone)]
pub struct Producer {
    /// The producer and its generation: a fatal error seen on a producer that has since been
    /// replaced does not replace its successor.
    inner: Arc<RwLock<(u64, FutureProducer)>>,
    config: ClientConfig,
    topic: String,
    /// How long a write may wait for the broker (`Config::write_timeout`).
    timeout: Duration,
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
        let mut c = config.kafka_client();
        // Acknowledged by every in-sync replica, without duplicates or reordering on retry.
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            // A record the broker has not acknowledged by the time the client is answered 503
            // expires too, rather than being written later behind the client's retry.
            .set(
                "message.timeout.ms",
                config.write_timeout.as_millis().to_string(),
            );
        for (k, v) in &config.producer_properties {
            c.set(k, v);
        }
        Ok(Producer {
            inner: Arc::new(RwLock::new((0, c.create()?))),
            config: c,
            topic: config.topic.clone(),
            timeout: config.write_timeout,
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
            .send(record, self.timeout)
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e);
        // librdkafka's idempotent producer raises a fatal error when it can no longer
        // guarantee order without gaps (the broker lost its state of this producer id): the
        // instance then refuses every write for good and must be replaced. A new one gets a
        // new producer id. The failed write was not acknowledged, so the API answers it 503.
        if sent.is_err() {
            if let Some((code, reason)) = producer.client().fatal_error() {
                self.replace(generation, code, &reason);
            }
        }
        sent
    }

    /// Swaps in a new producer unless another write has already replaced `generation`; writes
    /// in flight finish on the old one.
    fn replace(&self, generation: u64, code: RDKafkaErrorCode, reason: &str) {
        let mut inner = self.inner.write().expect("producer lock");
        if inner.0 != generation {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                *inner = (generation + 1, fresh);
                metrics::counter!("subscribers_producer_replacements_total").increment(1);
                tracing::error!(?code, reason, "the producer failed fatally; replaced it");
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

/// Creates the topic with `partitions` partitions, the configured replication and retention
/// unless it exists, and reads back how it is replicated. An existing topic keeps its own
/// settings: they are the operator's.
pub async fn ensure_topic(config: &Config) -> Result<TopicReplicas, KafkaError> {
    let admin: Arc<Admin> = Arc::new(config.kafka_client().create()?);
    let brokers = metadata(&admin, None).await?.brokers().len();
    let replication = config.replication().resolve(brokers);
    let retention = config.topic_retention_ms();
    let topic = replication
        .new_topic(&config.topic, config.partitions)
        .set("retention.ms", &retention);
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

/// How long the topic may keep a record after it was written, as its configuration says:
/// `None` when it keeps records for good (`retention.ms` -1, or no `delete` in
/// `cleanup.policy`).
///
/// The broker deletes a log segment once its newest record is older than `retention.ms`, and a
/// segment takes new records for at most `segment.ms`: a record can outlive `retention.ms` by
/// up to `segment.ms`, and by the broker's check interval on top of that (the caller's margin).
pub async fn topic_lifetime(config: &Config) -> Result<Option<Duration>, KafkaError> {
    let admin: Admin = config.kafka_client().create()?;
    let opts = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(&config.topic)], &opts)
        .await?;
    let entries: Vec<_> = described
        .into_iter()
        .flatten()
        .flat_map(|r| r.entries)
        .collect();
    let value = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
            .ok_or(KafkaError::AdminOp(RDKafkaErrorCode::InvalidConfig))
    };
    let ms = |name: &str| -> Result<i64, KafkaError> {
        value(name)?
            .parse()
            .map_err(|_| KafkaError::AdminOp(RDKafkaErrorCode::InvalidConfig))
    };
    let (retention, segment) = (ms("retention.ms")?, ms("segment.ms")?);
    if retention < 0
        || !value("cleanup.policy")?
            .split(',')
            .any(|p| p.trim() == "delete")
    {
        return Ok(None);
    }
    let total = u64::try_from(retention.saturating_add(segment.max(0))).unwrap_or(u64::MAX);
    Ok(Some(Duration::from_millis(total)))
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use uuid::Uuid;

    use super::*;
    use crate::message::{Fields, Update};

    fn update() -> Message {
        Message::Update(Update {
            player_id: Uuid::new_v4(),
            app_id: Uuid::new_v4(),
            fields: Fields::default(),
            tags: Default::default(),
            email: None,
            parent_player_id: None,
        })
    }

    /// librdkafka's idempotent producer fails fatally when the broker refuses it a producer id
    /// for want of authorization: that instance refuses every write for good. The next write
    /// goes through a new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_producer_failed_fatally_is_replaced_and_the_next_write_goes_through() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("updates", 1, 1).unwrap();
        mock.request_errors(
            RDKafkaApiKey::InitProducerId,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED],
        );
        let config = Config {
            kafka_brokers: mock.bootstrap_servers(),
            topic: "updates".into(),
            ..Config::default()
        };
        let producer = Producer::new(&config).unwrap();
        let first = producer.send(&update()).await;
        assert!(
            first.is_err(),
            "the first write meets the fatal error: {first:?}"
        );
        let generation = producer.inner.read().unwrap().0;
        assert_eq!(generation, 1, "replaced once");
        let second = producer.send(&update()).await;
        assert!(second.is_ok(), "the new producer writes: {second:?}");
    }
}
