//! The API's side of Kafka: the topic, and an idempotent producer whose acknowledgement is what
//! the API waits for before it answers 200 — an acknowledged update is never lost.

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

/// A handle on the producer, cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    topic: String,
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
            inner: c.create()?,
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
        self.inner
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e)
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
