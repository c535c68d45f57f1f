//! One replay's consumer, in a process of its own (`kafkaesque bench --replay-worker JOB`).
//!
//! Apart for two reasons: the peak memory of the consumer is then the process's own (`VmHWM`),
//! not the benchmark's with its producer and samples; and the `Divert` variant can crash
//! librdkafka 2.12.1 against the local broker (a segfault in `rd_kafka_metadata_update_op` when
//! a consumer pauses and seeks rapidly, see `docs/consumer.md`) — a crashed child is reported as
//! such instead of ending the whole run.
//!
//! It runs the service's own consumer ([`kafkaesque_subscribers::consumer::builder`] and
//! [`Applier`]) with the variant's ordering and hot-key policy, and a handler that makes the hot
//! row's write slow once told [`FLOOD`]. It stops when its standard input closes, and then writes
//! an [`Outcome`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use kafkaesque_runtime::{headers, HandlerError, HotKeyPolicy, Record};
use kafkaesque_subscribers::apply::Applier;
use kafkaesque_subscribers::busiest::Busiest;
use kafkaesque_subscribers::merge::is_batch;
use kafkaesque_subscribers::message::{row_key, Batch};
use kafkaesque_subscribers::routing::LinkCache;
use kafkaesque_subscribers::skip::SkipList;
use kafkaesque_subscribers::store::Store;
use kafkaesque_subscribers::{consumer, Config};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use crate::compare::legacy_design;
use crate::load::drive::now_ms;
use crate::rig::GROUP_PROPERTIES;
use crate::stats::peak_rss_bytes;

/// The legacy design's one global cap in the replay, scaled to the replay's rates (about six
/// seconds of the flood), so that a replay of a minute shows what the legacy consumer went
/// through over hours.
pub const LEGACY_CAP: usize = 3_000;

/// The line on standard input that starts the flood: from then on the hot row's write is slow.
pub const FLOOD: &str = "flood";

/// The consumer design a replay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The legacy design: hashed worker queues, one global cap, no hot-key policy.
    Legacy,
    /// The service as it ships: per-row queues, the hot row's queue coalesced.
    Coalesce,
    /// Per-row queues, the hot row's records diverted to an overflow topic.
    Divert,
}

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Variant::Legacy => "legacy design",
            Variant::Coalesce => "kafkaesque Coalesce",
            Variant::Divert => "kafkaesque Divert",
        }
    }
}

/// What the benchmark tells the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// libpq connection string of the replay's database.
    pub database: String,
    pub variant: Variant,
    pub concurrency: usize,
    /// The row whose write is slow, and how slow.
    pub hot_row: Uuid,
    pub hot_write_ms: u64,
    /// The flooding app: its records are not the "other apps'" whose delay is measured.
    pub flood_app: Option<Uuid>,
    /// Where to write the [`Outcome`].
    pub out: PathBuf,
}

/// What the worker saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Every record of another app the consumer applied: (partition, offset, applied at in ms
    /// since the epoch). The benchmark knows when each was sent, and which were never applied.
    pub other_applied: Vec<(i32, i64, i64)>,
    /// Deliveries applied, all apps.
    pub applied: u64,
    pub peak_rss_bytes: Option<u64>,
}

/// Runs the job until standard input closes.
///
/// # Errors
/// When the job does not parse, the consumer cannot start or fails, or the outcome cannot be
/// written.
pub async fn run(job: &str) -> Result<()> {
    let job: Job = serde_json::from_str(job).context("replay job")?;
    let config = Config {
        kafka_brokers: job.brokers.clone(),
        database: job.database.parse().context("replay database")?,
        topic: job.topic.clone(),
        group_id: job.group.clone(),
        concurrency: job.concurrency,
        consumer_properties: GROUP_PROPERTIES
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Config::default()
    };
    let store = Store::new(&config.database, &config.database_tls, config.pool_size)?;
    let skips = SkipList::default();
    let links = LinkCache::default();
    let builder = consumer::builder(&config, &store, &skips, &Busiest::default(), &links)
        .commit_interval(Duration::from_millis(500));
    let builder = match job.variant {
        Variant::Legacy => legacy_design(builder, job.concurrency, LEGACY_CAP),
        Variant::Coalesce => builder,
        Variant::Divert => builder.hot_key(HotKeyPolicy::Divert),
    };
    let consumer = builder.build()?;
    let applier = Applier::new(store, skips, config.link_limit).with_links(links);
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    // The hot row's write turns slow when the benchmark says "flood" (the set-up before runs at
    // PostgreSQL's own speed); the consumer stops when standard input closes.
    let flooding = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = Arc::clone(&flooding);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == FLOOD {
                signal.store(true, Ordering::Relaxed);
            }
        }
        let _ = stop.send(());
    });
    // The hot row's ordering key: it belongs to the flooding app.
    let hot_row = job.flood_app.map(|app| row_key(app, job.hot_row));
    let flood_app = job.flood_app.map(|a| Bytes::from(a.to_string()));
    let slow = Duration::from_millis(job.hot_write_ms);
    let seen = Arc::clone(&outcome);
    let handler = move |record: Record| {
        let (applier, seen) = (applier.clone(), Arc::clone(&seen));
        let hot = hot_row.is_some()
            && record.route() == hot_row.as_ref()
            && flooding.load(Ordering::Relaxed);
        let other = record.key().is_some() && record.key_bytes() != flood_app.as_ref();
        async move {
            if hot {
                tokio::time::sleep(slow).await;
            }
            let records = if other {
                source_records(&record)
            } else {
                Vec::new()
            };
            applier.handle(record).await?;
            let at = now_ms();
            let mut seen = seen.lock().expect("outcome lock");
            seen.applied += 1;
            seen.other_applied
                .extend(records.into_iter().map(|(p, o)| (p, o, at)));
            Ok::<(), HandlerError>(())
        }
    };
    consumer
        .run(handler, async {
            let _ = stopped.await;
        })
        .await?;
    let mut outcome = std::mem::take(&mut *outcome.lock().expect("outcome lock"));
    outcome.peak_rss_bytes = peak_rss_bytes();
    std::fs::write(&job.out, serde_json::to_vec(&outcome)?)
        .with_context(|| format!("writing {}", job.out.display()))?;
    Ok(())
}

/// The source records a delivery applies: a coalesced one carries each change with its offset;
/// a diverted one names its source partition and offset in headers.
fn source_records(record: &Record) -> Vec<(i32, i64)> {
    let number = |name: &str| -> Option<i64> {
        std::str::from_utf8(record.header(name)?).ok()?.parse().ok()
    };
    let partition = number(headers::SOURCE_PARTITION).map_or(record.partition(), |p| p as i32);
    if is_batch(record) {
        let payload = record.payload().unwrap_or_default();
        Batch::parse(payload)
            .map(|entries| entries.iter().map(|e| (partition, e.offset())).collect())
            .unwrap_or_default()
    } else {
        vec![(
            partition,
            number(headers::SOURCE_OFFSET).unwrap_or(record.offset()),
        )]
    }
}
