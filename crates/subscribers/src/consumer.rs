//! The consumer: the runtime's [`Consumer`] with this service's router, merge and handler.

use std::future::Future;
use std::sync::{Arc, Mutex};

use kafkaesque_runtime::{
    Consumer, ConsumerBuilder, HotKeyPolicy, Limits, Merge, Observer, Record,
};

use crate::apply::Applier;
use crate::busiest::Busiest;
use crate::routing::{self, LinkCache};
use crate::skip::SkipList;
use crate::store::Store;
use crate::{merge, Config, Result};

/// What `GET /admin/top` reads from the consumer running in this process.
#[derive(Debug, Clone, Default)]
pub struct ConsumerView {
    /// Updates per app and row over the last minute, counted by the router.
    pub top: Busiest,
    observer: Arc<Mutex<Option<Observer>>>,
}

impl ConsumerView {
    /// The consumer's partitions and busiest keys; `None` until it has started.
    pub fn observer(&self) -> Option<Observer> {
        self.observer.lock().expect("observer slot").clone()
    }
}

/// Consumes the updates topic and applies it to PostgreSQL until `shutdown` completes; then
/// finishes what is in flight and commits.
pub async fn run(
    config: &Config,
    store: Store,
    skips: SkipList,
    view: ConsumerView,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let links = LinkCache::default();
    let consumer = builder(config, &store, &skips, &view.top, &links).build()?;
    *view.observer.lock().expect("observer slot") = Some(consumer.observer());
    let applier = Applier::new(store, skips, config.link_limit)
        .with_links(links)
        .with_tag_limit(config.tag_limit);
    let handler = move |record: Record| {
        let applier = applier.clone();
        async move { applier.handle(record).await }
    };
    consumer.run(handler, shutdown).await?;
    Ok(())
}

/// The service's consumer before its handler is given: router, link loader, merge and limits
/// from `config`; `links` is the router's cache, to be given to the [`Applier`] too
/// ([`Applier::with_links`]). Apart from [`run`] so that the benchmarks can replay the incident
/// with this very consumer under another hot-key policy or ordering (one builder call each) and
/// wrap the [`Applier`] in a handler of their own.
pub fn builder(
    config: &Config,
    store: &Store,
    skips: &SkipList,
    top: &Busiest,
    links: &LinkCache,
) -> ConsumerBuilder {
    let merge: Arc<dyn Merge<Record>> = Arc::new(merge::merge);
    let mut builder = Consumer::builder()
        .brokers(&config.kafka_brokers)
        .group_id(&config.group_id)
        .topics([config.topic.clone()])
        .concurrency(config.concurrency)
        .limits(Limits {
            key_max_records: config.key_max_records,
            ..Limits::default()
        })
        .hot_key(HotKeyPolicy::Coalesce(merge))
        // The handler decodes the record and awaits the database at once: polled first on the
        // driver, an update reaches PostgreSQL without waiting for a tokio worker, one thread
        // hand-off fewer per record. On busy cores that hand-off is much of the p99 other apps
        // see while one app sends at its full rate (docs/benchmarks.md, the abuse run).
        .inline_first_poll(true)
        .replication(config.replication())
        .topic_retention(config.topic_retention)
        .key_router(routing::key_router(
            links.clone(),
            skips.clone(),
            top.clone(),
        ))
        .on_assign(links.loader(store.clone(), tokio::runtime::Handle::current()));
    for (k, v) in config
        .kafka_properties
        .iter()
        .chain(&config.consumer_properties)
    {
        builder = builder.set(k, v);
    }
    builder
}
