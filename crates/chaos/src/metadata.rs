//! What the cluster says about the service's topic: which node leads the busiest partition (the
//! one whose loss hurts most, so the one the broker faults aim at) and whether every replica is
//! back in sync (so that the next broker fault does not take the last in-sync copy).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::MetadataPartition;

use crate::{Error, Result};

/// How long one metadata or watermark request may take.
const REQUEST: Duration = Duration::from_secs(10);

/// A metadata client for one topic.
#[derive(Clone)]
pub struct Topic {
    client: Arc<BaseConsumer>,
    name: String,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic").field("name", &self.name).finish()
    }
}

/// One partition as metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub id: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl From<&MetadataPartition> for Partition {
    fn from(p: &MetadataPartition) -> Partition {
        Partition {
            id: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
        }
    }
}

impl Topic {
    pub fn new(bootstrap: &str, name: &str) -> Result<Topic> {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "chaos-metadata")
            .create()
            .map_err(|e| Error::Setup(format!("a metadata client for {bootstrap}: {e}")))?;
        Ok(Topic {
            client: Arc::new(client),
            name: name.to_owned(),
        })
    }

    /// Every partition of the topic, fresh from the cluster.
    pub async fn partitions(&self) -> Result<Vec<Partition>> {
        let (client, name) = (self.client.clone(), self.name.clone());
        blocking(move || {
            let meta = client
                .fetch_metadata(Some(&name), REQUEST)
                .map_err(|e| format!("metadata of {name}: {e}"))?;
            let topic = meta
                .topics()
                .first()
                .ok_or_else(|| format!("no topic {name}"))?;
            Ok(topic.partitions().iter().map(Partition::from).collect())
        })
        .await
    }

    /// The partition holding the most records, and its leader's node id.
    pub async fn busiest(&self) -> Result<Partition> {
        let partitions = self.partitions().await?;
        let (client, name) = (self.client.clone(), self.name.clone());
        let ids: Vec<i32> = partitions.iter().map(|p| p.id).collect();
        let busiest = blocking(move || {
            let mut best = (i64::MIN, ids.first().copied().unwrap_or(0));
            for id in ids {
                let (low, high) = client
                    .fetch_watermarks(&name, id, REQUEST)
                    .map_err(|e| format!("watermarks of {name}/{id}: {e}"))?;
                best = best.max((high - low, id));
            }
            Ok(best.1)
        })
        .await?;
        partitions
            .into_iter()
            .find(|p| p.id == busiest)
            .ok_or_else(|| Error::Setup(format!("partition {busiest} vanished")))
    }

    /// Waits until every partition has a leader and all its replicas in sync; `false` if that
    /// did not happen within `limit`.
    pub async fn wait_in_sync(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(ps) = self.partitions().await {
                let synced = ps
                    .iter()
                    .all(|p| p.leader >= 0 && p.replicas.iter().all(|r| p.isr.contains(r)));
                if !ps.is_empty() && synced {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Setup(format!("a metadata task failed: {e}")))?
        .map_err(Error::Setup)
}
