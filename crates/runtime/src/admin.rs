//! What the consumer asks of the cluster before it starts: its dead-letter and overflow topics,
//! and how much commit metadata the brokers accept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::metadata::Metadata;
use tracing::warn;

use kafkaesque_engine::HotKeyPolicy;

use crate::callbacks::AdminContext;
use crate::clients::{client_config, Role};
use crate::config::{is_pattern, ConsumerConfig};
use crate::error::{Error, Result};

/// Creates the dead-letter topics, and the overflow topics when keys may be diverted, with as
/// many partitions as their source topic and the configured retention, if they do not exist. A
/// pattern (`^...`) names no topic yet: the topics of those it comes to match rely on
/// auto-creation.
pub(crate) async fn prepare_topics(cfg: &ConsumerConfig) -> Result<()> {
    let admin: AdminClient<AdminContext> = client_config(cfg, Role::Admin)
        .create_with_context(AdminContext::new(cfg.callbacks.clone()))
        .map_err(Error::kafka("creating the admin client"))?;
    let meta_consumer: Arc<BaseConsumer<AdminContext>> = Arc::new(
        client_config(cfg, Role::Admin)
            .create_with_context(AdminContext::new(cfg.callbacks.clone()))
            .map_err(Error::kafka("creating a metadata client"))?,
    );
    let divert = matches!(cfg.engine.hot_key, HotKeyPolicy::Divert);
    let mut wanted = Vec::new();
    let mut brokers = 1;
    for topic in &cfg.topics {
        if is_pattern(topic) {
            // The first request still checks the login; a pattern names no topic to look up.
            first_metadata(&meta_consumer, None).await?;
            continue;
        }
        let meta = first_metadata(&meta_consumer, Some(topic)).await?;
        brokers = meta.brokers().len();
        let partitions = meta.topics().first().map_or(0, |t| t.partitions().len()) as i32;
        if partitions == 0 {
            continue; // auto-created later; sinks then rely on auto-creation too
        }
        wanted.push((format!("{topic}{}", cfg.dead_letter_suffix), partitions));
        if divert {
            wanted.push((format!("{topic}{}", cfg.overflow_suffix), partitions));
        }
    }
    let replication = cfg.replication.resolve(brokers);
    let retention = cfg.topic_retention.map(|r| r.as_millis().to_string());
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, p)| {
            let topic = replication.new_topic(name, *p);
            match &retention {
                Some(ms) => topic.set("retention.ms", ms),
                None => topic,
            }
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(5)));
    let results = match admin.create_topics(&new, &opts).await {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "could not create dead-letter/overflow topics (they may be auto-created on first use)");
            return Ok(());
        }
    };
    for r in results {
        if let Err((topic, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                warn!(%topic, ?code, "could not create topic (it may be auto-created on first use)");
            }
        }
    }
    // A topic that was just created may not have its leaders yet; fetching from it then meets
    // errors some client and broker pairs handle badly. Wait (briefly) until it has them.
    for (name, partitions) in &wanted {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let topic = name.clone();
            let ready = blocking(&meta_consumer, move |c| {
                c.fetch_metadata(Some(&topic), Duration::from_secs(2))
            })
            .await
            .ok()
            .and_then(|m| {
                let t = m.topics().first()?;
                Some(
                    t.error().is_none()
                        && t.partitions().len() as i32 >= *partitions
                        && t.partitions().iter().all(|p| p.leader() >= 0),
                )
            })
            .unwrap_or(false);
            if ready || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The metadata of `topic` (of every topic for `None`): the consumer's first request to the cluster. Asked for a second at
/// a time, up to ten, so that a refused login or TLS handshake (wrong password, mechanism or
/// CA) ends the consumer at once as [`Error::Refused`], rather than after the timeout as a
/// transport failure — or never, since librdkafka itself retries for ever.
async fn first_metadata(
    client: &Arc<BaseConsumer<AdminContext>>,
    topic: Option<&str>,
) -> Result<Metadata> {
    const CONTEXT: &str = "reading topic metadata";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let name = topic.map(str::to_owned);
        let got = blocking(client, move |c| {
            c.fetch_metadata(name.as_deref(), Duration::from_secs(1))
        })
        .await;
        match got {
            Ok(meta) => return Ok(meta),
            Err(e) => {
                if let Some(code) = crate::login_refused(client) {
                    return Err(Error::Refused {
                        context: CONTEXT,
                        reason: code.to_string(),
                    });
                }
                if Instant::now() >= deadline {
                    return Err(Error::kafka(CONTEXT)(e));
                }
            }
        }
    }
}

/// The commit-metadata budget: `offset.metadata.max.bytes` as the first broker that answers
/// says, and that broker's id; 4096 (Kafka's default) and `None` when none says.
///
/// Asked of every broker in the cluster's metadata in turn rather than of one fixed id: broker
/// ids are whatever the cluster was given (KRaft clusters often start at 1), and any one broker
/// may be down when the consumer starts.
pub(crate) async fn metadata_budget(cfg: &ConsumerConfig) -> (usize, Option<i32>) {
    use rdkafka::admin::ResourceSpecifier;
    const DEFAULT: usize = 4096;
    let Ok(admin) = client_config(cfg, Role::Admin)
        .create_with_context::<_, AdminClient<AdminContext>>(AdminContext::new(
            cfg.callbacks.clone(),
        ))
    else {
        return (DEFAULT, None);
    };
    let admin = Arc::new(admin);
    let ids: Vec<i32> = blocking(&admin, |a| {
        a.inner().fetch_metadata(None, Duration::from_secs(5))
    })
    .await
    .map(|m| m.brokers().iter().map(|b| b.id()).collect())
    .unwrap_or_default();
    // Brokers that do not implement DescribeConfigs simply do not answer: do not wait long.
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_millis(1500)));
    for id in ids {
        let Ok(results) = admin
            .describe_configs(&[ResourceSpecifier::Broker(id)], &opts)
            .await
        else {
            continue;
        };
        let budget = results
            .into_iter()
            .flatten()
            .flat_map(|r| r.entries)
            .find(|e| e.name == "offset.metadata.max.bytes")
            .and_then(|e| e.value?.parse().ok());
        if let Some(bytes) = budget {
            return (bytes, Some(id));
        }
    }
    (DEFAULT, None)
}

/// Runs a blocking librdkafka call on tokio's blocking pool. Not `block_in_place`: that panics
/// on a current-thread runtime (a plain `#[tokio::test]`), and this works on any.
async fn blocking<C, T>(client: &Arc<C>, call: impl FnOnce(&C) -> T + Send + 'static) -> T
where
    C: Send + Sync + 'static,
    T: Send + 'static,
{
    let client = client.clone();
    match tokio::task::spawn_blocking(move || call(&client)).await {
        Ok(got) => got,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Consumer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_metadata_budget_is_read_from_a_broker_that_answers() {
        let broker = kafkaesque_testkit::require_broker().await;
        let cfg = Consumer::builder()
            .brokers(broker.bootstrap_servers())
            .group_id("budget")
            .topics(["budget"])
            .validate()
            .unwrap();
        let (bytes, from) = metadata_budget(&cfg).await;
        assert!(from.is_some(), "no broker answered DescribeConfigs");
        assert!(bytes >= 1024, "{bytes} bytes from broker {from:?}");
    }
}
