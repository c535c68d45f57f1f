//! The consumer: a driver thread that owns the engine and the Kafka clients, a fetcher thread
//! that takes records off the partitions' queues, and handler tasks on the caller's tokio
//! runtime.
//!
//! Why a thread of its own for the driver: librdkafka runs rebalance callbacks inside `poll`,
//! and a revoke must wait (briefly) for in-flight handlers before committing. Doing that on a
//! tokio worker would block the very runtime the handlers need; on a dedicated thread it blocks
//! nothing else. The thread never waits on a handler except there, so the poll loop keeps the
//! group membership alive however slow the handlers are: back-pressure stops taking records
//! from a full partition's own queue (`feeds.rs`), never from the group's. Why a fetcher thread
//! besides: see `fetcher.rs`.

use std::future::Future;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use kafkaesque_engine::{Engine, HotKeyPolicy};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{error, info, warn};

use crate::config::{client_config, ConsumerConfig};
use crate::context::{GroupContext, OverflowContext};
use crate::events::Event;
use crate::fetcher::{self, Batches, Closing, Hub};
use crate::observe::Observer;
use crate::sinks::Sinks;
use crate::spawn::Spawner;
use crate::state::{Inputs, State};
use crate::{ConsumerBuilder, Error, Handler, Result};

/// A key-ordered, massively concurrent Kafka consumer. Build one with [`Consumer::builder`].
#[derive(Debug)]
pub struct Consumer {
    cfg: ConsumerConfig,
    observer: Observer,
}

impl Consumer {
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    pub(crate) fn new(cfg: ConsumerConfig) -> Self {
        Consumer {
            cfg,
            observer: Observer::default(),
        }
    }

    /// A live view of partitions and the busiest keys, refreshed every second.
    pub fn observer(&self) -> Observer {
        self.observer.clone()
    }

    /// Consumes until `shutdown` resolves: then stops fetching, lets in-flight work finish (up
    /// to the drain timeout), commits, and leaves the group. Handlers run on the current tokio
    /// runtime. Returns an error only for what it cannot recover from (a fatal client error).
    pub async fn run<H, S>(self, handler: H, shutdown: S) -> Result<()>
    where
        H: Handler,
        S: Future<Output = ()>,
    {
        let cfg = self.cfg;
        let (prepared, budget) = tokio::join!(prepare_topics(&cfg), metadata_budget(&cfg));
        prepared?;
        let (tx, rx) = mpsc::channel::<Event>();
        let spawn = Spawner::new(Arc::new(handler), tx.clone());
        let mut engine_cfg = cfg.engine.clone();
        engine_cfg.seed ^= std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
        let (budget, from_broker) = budget;
        engine_cfg.limits.metadata_max_bytes = budget;
        info!(bytes = budget, ?from_broker, "commit metadata budget");
        let engine = Engine::new(engine_cfg).map_err(|e| Error::config(e.field, e.problem))?;
        let sinks = Sinks::new(&cfg.brokers, &cfg.properties, tx.clone())?;
        let mut consumer: BaseConsumer<GroupContext> = client_config(&cfg, &cfg.group_id)
            .create_with_context(GroupContext::new(tx.clone(), self.observer.clone()))
            .map_err(Error::kafka("creating the consumer"))?;
        // An idle driver sleeps until something arrives: the main queue (rebalances, errors)
        // wakes it through this callback, the fetcher by unparking it. Outcomes and deliveries
        // are picked up by its short naps while work is running.
        let hub: Arc<Hub> = Arc::default();
        let wake = hub.clone();
        consumer.set_nonempty_callback(move || wake.wake_driver());
        let overflow = if matches!(cfg.engine.hot_key, HotKeyPolicy::Divert) {
            let group = format!("{}.overflow", cfg.group_id);
            let mut c: BaseConsumer<OverflowContext> = client_config(&cfg, &group)
                .create_with_context(OverflowContext::new(tx.clone()))
                .map_err(Error::kafka("creating the overflow consumer"))?;
            // Diverted records coming back wake an idle driver too.
            let wake = hub.clone();
            c.set_nonempty_callback(move || wake.wake_driver());
            Some(c)
        } else {
            None
        };
        let (batch_tx, batch_rx) = mpsc::channel();
        let (spent_tx, spent_rx) = mpsc::channel();
        let fetcher = {
            let hub = hub.clone();
            std::thread::Builder::new()
                .name("kafkaesque-fetch".into())
                .spawn(move || fetcher::run(&hub, &batch_tx, &spent_rx))
                .map_err(|e| Error::Driver(e.to_string()))?
        };
        // Set before any partition gets a queue: each queue's callback wakes the fetcher.
        let _ = hub.fetcher.set(fetcher.thread().clone());
        let consumer = Arc::new(consumer);
        let inputs = Inputs {
            events: rx,
            hub: hub.clone(),
            spent: spent_tx,
        };
        let state = State::new(
            engine,
            inputs,
            spawn,
            sinks,
            overflow,
            cfg.clone(),
            self.observer.clone(),
        );
        consumer.context().install(state, &consumer);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let rt = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name("kafkaesque-driver".into())
            .spawn(move || {
                // Handlers are started (and first polled) on this thread: it lives inside the
                // caller's runtime for good, rather than entering it once per record.
                let _runtime = rt.enter();
                // Closes the hub however this thread ends, a panic included: the partitions'
                // queues hold references to the consumer, and without them it can be dropped
                // (and leave the group) when this thread ends.
                let closing = Closing(hub.clone());
                let _ = hub.driver.set(std::thread::current());
                let r = drive(&consumer, &cfg, &batch_rx);
                drop(closing);
                if fetcher.join().is_err() {
                    error!("the fetcher thread panicked");
                }
                let _ = done_tx.send(r);
            })
            .map_err(|e| Error::Driver(e.to_string()))?;
        let mut done_rx = done_rx;
        tokio::pin!(shutdown);
        let result = tokio::select! {
            r = &mut done_rx => r,
            () = &mut shutdown => {
                let _ = tx.send(Event::Shutdown);
                thread.thread().unpark();
                done_rx.await
            }
        };
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        result.map_err(|_| Error::Driver("the driver thread panicked".into()))?
    }
}

/// Shortest and longest pause of the driver while handlers run and Kafka has nothing new.
const MIN_NAP: Duration = Duration::from_micros(100);
const MAX_NAP: Duration = Duration::from_millis(2);
/// Longest sleep of an idle driver (nothing running, nothing fetched): it is woken sooner by
/// anything arriving in a queue, and shutdown wakes it too.
const IDLE_NAP: Duration = Duration::from_millis(50);

/// The driver loop. See the module documentation.
fn drive(
    consumer: &BaseConsumer<GroupContext>,
    cfg: &ConsumerConfig,
    batches: &Batches,
) -> Result<()> {
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(Error::kafka("subscribing"))?;
    info!(group = %cfg.group_id, topics = ?cfg.topics, "consumer started");
    let mut next_commit = Instant::now() + cfg.commit_interval;
    let mut next_publish = Instant::now() + Duration::from_secs(1);
    let mut nap = MIN_NAP;
    loop {
        // The main queue: rebalances and errors are served here (callbacks inside `poll` take
        // the state, so it is not held), and records of partitions without a queue of their own.
        let mut got = 0;
        while got < 512 {
            match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => {
                    consumer.context().state().on_message(&m);
                    got += 1;
                }
                Some(Err(e)) => {
                    check_fatal(consumer, e)?;
                    break;
                }
            }
        }
        let mut st = consumer.context().state();
        st.retry_assign_hook(consumer);
        got += st.take_batches(batches, consumer);
        got += st.poll_overflow();
        let events = st.drain_events(consumer);
        let now_ms = st.now_ms();
        st.engine.advance_time(now_ms);
        let now = Instant::now();
        st.sinks.retry_due(now);
        st.sinks.poll();
        st.run_actions(consumer);
        if now >= next_commit {
            let commits = st.engine.commits();
            st.commit(consumer, commits);
            next_commit = now + cfg.commit_interval;
        }
        if now >= next_publish {
            st.publish();
            next_publish = now + Duration::from_secs(1);
        }
        if st.shutdown {
            drop(st);
            return shut_down(consumer, cfg);
        }
        if got > 0 || events > 0 {
            nap = MIN_NAP;
            continue;
        }
        let busy = st.engine.in_flight() > 0 || st.sinks.pending() > 0;
        drop(st);
        if busy {
            // Kafka has nothing new and work is running. Nap rather than block on the channel:
            // a handler's send then never has to wake this thread, and the outcomes that arrive
            // meanwhile are taken in one batch. Naps lengthen while nothing arrives, so slow
            // handlers cost no CPU here; a record arriving ends the nap.
            std::thread::park_timeout(nap);
            nap = (nap * 2).min(MAX_NAP);
        } else {
            // Idle: sleep until a queue receives something (its callback wakes this thread),
            // and look at the clock and the channel now and then.
            std::thread::park_timeout(IDLE_NAP);
        }
    }
}

/// Graceful shutdown: stop dispatching, drain, commit synchronously, leave the group.
fn shut_down(consumer: &BaseConsumer<GroupContext>, cfg: &ConsumerConfig) -> Result<()> {
    info!("shutting down: draining in-flight work");
    {
        let mut st = consumer.context().state();
        st.feeds.hub.stop();
        for h in st.handles() {
            st.engine.drain(h);
        }
        let deadline = Instant::now() + cfg.drain_timeout;
        if !st.drain_until(consumer, deadline, |s| {
            s.engine.in_flight() == 0 && s.sinks.pending() == 0
        }) {
            warn!("drain timeout at shutdown: unfinished work will be replayed by the next owner");
        }
        let commits = st.engine.commits();
        st.commit_final(consumer, commits);
        st.sinks.flush(Duration::from_secs(5));
    }
    consumer.unsubscribe();
    // Serve the revoke that leaving the group triggers.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false)
    {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    info!("consumer stopped");
    Ok(())
}

fn check_fatal(consumer: &BaseConsumer<GroupContext>, e: KafkaError) -> Result<()> {
    if let Some((code, reason)) = consumer.client().fatal_error() {
        error!(?code, %reason, "fatal consumer error");
        return Err(Error::Kafka {
            context: "consuming",
            source: e,
        });
    }
    warn!(error = %e, "consumer error (librdkafka will retry)");
    Ok(())
}

/// Creates the dead-letter topics, and the overflow topics when keys may be diverted, with as
/// many partitions as their source topic, if they do not exist.
async fn prepare_topics(cfg: &ConsumerConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg, &cfg.group_id)
        .create()
        .map_err(Error::kafka("creating the admin client"))?;
    let meta_consumer: BaseConsumer = client_config(cfg, &cfg.group_id)
        .create()
        .map_err(Error::kafka("creating a metadata client"))?;
    let divert = matches!(cfg.engine.hot_key, HotKeyPolicy::Divert);
    let mut wanted = Vec::new();
    let mut brokers = 1;
    for topic in &cfg.topics {
        let meta = first_metadata(&meta_consumer, topic).await?;
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
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, p)| replication.new_topic(name, *p))
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
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                warn!(%topic, ?code, "could not create topic (it may be auto-created on first use)");
            }
        }
    }
    // A topic that was just created may not have its leaders yet; fetching from it then meets
    // errors some client and broker pairs handle badly. Wait (briefly) until it has them.
    for (name, partitions) in &wanted {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = tokio::task::block_in_place(|| {
                meta_consumer.fetch_metadata(Some(name), Duration::from_secs(2))
            })
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

/// The metadata of `topic`: the consumer's first request to the cluster. Asked for a second at
/// a time, up to ten, so that a refused login or TLS handshake (wrong password, mechanism or
/// CA) ends the consumer at once as [`Error::Refused`], rather than after the timeout as a
/// transport failure — or never, since librdkafka itself retries for ever.
async fn first_metadata(client: &BaseConsumer, topic: &str) -> Result<Metadata> {
    const CONTEXT: &str = "reading topic metadata";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = tokio::task::block_in_place(|| {
            client.fetch_metadata(Some(topic), Duration::from_secs(1))
        });
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
async fn metadata_budget(cfg: &ConsumerConfig) -> (usize, Option<i32>) {
    use rdkafka::admin::ResourceSpecifier;
    const DEFAULT: usize = 4096;
    let Ok(admin) = client_config(cfg, &cfg.group_id).create::<AdminClient<DefaultClientContext>>()
    else {
        return (DEFAULT, None);
    };
    let ids: Vec<i32> =
        tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, Duration::from_secs(5)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_metadata_budget_is_read_from_a_broker_that_answers() {
        let broker = kafkaesque_testkit::require_broker().await;
        let cfg = Consumer::builder()
            .brokers(broker.bootstrap_servers())
            .group_id("budget")
            .topics(["budget"])
            .build()
            .unwrap()
            .cfg;
        let (bytes, from) = metadata_budget(&cfg).await;
        assert!(from.is_some(), "no broker answered DescribeConfigs");
        assert!(bytes >= 1024, "{bytes} bytes from broker {from:?}");
    }
}
