//! Runs the service — the API, the consumer, or both — until a shutdown future completes.
//!
//! Like mini-redis, the server takes its shutdown signal as a future: the binary passes Ctrl-C or
//! SIGTERM, tests pass a channel they complete when they are done. On shutdown the HTTP server
//! finishes the requests in flight and the consumer its deliveries in flight, and commits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::consumer::{self, ConsumerView};
use crate::producer::{self, Producer};
use crate::skip::SkipList;
use crate::store::Store;
use crate::{db, migrations, telemetry, tombstones, Config, Error, Result};

/// What a process runs. Every process serves health, metrics and the admin endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The subscriber API (`kafkaesque api`).
    pub api: bool,
    /// The consumer (`kafkaesque consume`), and `/admin/top`.
    pub consumer: bool,
}

impl Roles {
    /// `kafkaesque serve`.
    pub const ALL: Roles = Roles {
        api: true,
        consumer: true,
    };
    pub const API: Roles = Roles {
        api: true,
        consumer: false,
    };
    pub const CONSUMER: Roles = Roles {
        api: false,
        consumer: true,
    };
}

/// Binds `config.listen` and runs the service until `shutdown` completes; see [`run`].
pub async fn serve(
    config: Config,
    roles: Roles,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    run(listener, config, roles, shutdown).await
}

/// Runs the service on `listener` until `shutdown` completes.
///
/// On start it creates the database if the server lacks it and applies the migrations: without
/// PostgreSQL the service cannot do anything useful, so it fails at once. An unreachable Kafka is
/// not fatal: the topic is created once the broker answers, `/readyz` reports it until then.
///
/// # Errors
/// When PostgreSQL cannot be reached, a migration fails, the HTTP server fails, or the consumer
/// stops with an error it cannot recover from.
pub async fn run(
    listener: TcpListener,
    config: Config,
    roles: Roles,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.check()?;
    let server = db::describe(&config.database);
    db::ensure_database(&config.database, &config.database_tls).await?;
    let mut client = db::connect(&config.database, &config.database_tls).await?;
    let applied = migrations::migrate(&mut client, &server).await?;
    drop(client);
    tracing::info!(database = %server, ?applied, "database ready");

    let config = Arc::new(config);
    // Two pools: the API's requests and the consumer's handlers never wait for each other's
    // connections.
    let pooled = config.pooled_database();
    let store = Store::new(&pooled, &config.database_tls, config.api_pool_size)?;
    let consumer_store = Store::new(&pooled, &config.database_tls, config.pool_size)?;
    let (stop, stopping) = watch::channel(false);
    let stopped = move || {
        let mut rx = stopping.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let skips = SkipList::default();
    let follow = tokio::spawn(skips.clone().follow(store.clone(), stopped()));
    let (ready_tx, topic_ready) = watch::channel(false);
    let mut topic_task = tokio::spawn(create_topic(Arc::clone(&config), ready_tx, stopped()));

    let view = roles.consumer.then(ConsumerView::default);
    let mut consumer_task = view.clone().map(|view| {
        let (config, store, skips) = (Arc::clone(&config), consumer_store, skips.clone());
        let (mut ready, stopped) = (topic_ready.clone(), stopped.clone());
        tokio::spawn(async move {
            let ready = tokio::select! {
                r = ready.wait_for(|r| *r) => r.is_ok(),
                () = stopped() => return Ok(()),
            };
            if !ready {
                // The topic cannot be used (the service ends with the topic's error): nothing
                // to consume, and nothing to report here.
                stopped().await;
                return Ok(());
            }
            // The consumer's process prunes the tombstones its deletes leave.
            let prune = tokio::spawn(tombstones::run(
                Arc::clone(&config),
                store.clone(),
                stopped(),
            ));
            let outcome = consumer::run(&config, store, skips, view, stopped()).await;
            prune.abort();
            outcome
        })
    });
    // A long-lived client for the readiness checks: librdkafka keeps its broker connections
    // open and re-establishes them, so a check costs one metadata round trip. A consumer, so
    // that a refused login can be read off its queue; its group is never joined (nothing
    // subscribes), but without one librdkafka gives it no consumer queue to read.
    let kafka: BaseConsumer = config
        .kafka_client()
        .set("group.id", format!("{}.readiness", config.group_id))
        .create()?;
    let kafka = Arc::new(kafka);
    let (readiness, checks) = api::health::Readiness::start(
        Arc::clone(&kafka),
        config.database.clone(),
        config.database_tls.clone(),
        stopped(),
    );
    let limits = api::limit::Limits::new(&config);
    let shrink = tokio::spawn(shrink_buckets(limits.clone(), stopped()));
    let state = AppState {
        config: Arc::clone(&config),
        store,
        keys: api::auth::Keys::new(config.key_cache_ttl),
        limits,
        readiness,
        skips,
        producer: roles.api.then(|| Producer::new(&config)).transpose()?,
        topic_ready,
        consumer: view,
        metrics: telemetry::prometheus(),
    };
    let addr = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(%addr, kafka_brokers = %config.kafka_brokers, api = roles.api, consumer = roles.consumer, "listening");
    let http = api::edge::serve(listener, api::router(state), config.http, stopped());
    let mut http = tokio::spawn(async move {
        http.await;
        Ok(())
    });

    // Until told to stop — or until the consumer or the HTTP server stops by itself.
    let mut outcome = Ok(());
    tokio::select! {
        () = shutdown => {}
        r = &mut http => {
            outcome = r.unwrap_or_else(|e| Err(Error::Config(format!("HTTP task: {e}"))));
            tracing::error!("the HTTP server stopped by itself");
        }
        // Only a topic that cannot be used ends the service; one ready goes on serving.
        e = async {
            match (&mut topic_task).await {
                Ok(Ok(())) => std::future::pending().await,
                Ok(Err(e)) => e,
                Err(e) => Error::Config(format!("topic task: {e}")),
            }
        } => {
            tracing::error!(error = %e, "the topic cannot be used as configured");
            outcome = Err(e);
        }
        r = async { consumer_task.as_mut().expect("guarded").await }, if consumer_task.is_some() => {
            consumer_task = None;
            outcome = r.unwrap_or_else(|e| Err(Error::Config(format!("consumer task: {e}"))));
            tracing::error!("the consumer stopped by itself");
        }
    }
    let _ = stop.send(true);
    if let Some(task) = consumer_task {
        let r = task
            .await
            .unwrap_or_else(|e| Err(Error::Config(format!("consumer task: {e}"))));
        outcome = outcome.and(r);
    }
    if !http.is_finished() || outcome.is_ok() {
        if let Ok(r) = http.await {
            outcome = outcome.and(r);
        }
    }
    let _ = follow.await;
    let _ = checks.await;
    let _ = shrink.await;
    tracing::info!("shut down");
    outcome
}

/// Creates the topic once the broker answers, then says so.
///
/// # Errors
/// When the topic keeps acknowledged writes on a single replica and the configuration does not
/// say that the broker is a one-node development broker: an acknowledged update would then be
/// lost with one disk, which the service promises never happens.
async fn create_topic(
    config: Arc<Config>,
    ready: watch::Sender<bool>,
    stopped: impl Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(stopped);
    loop {
        match producer::ensure_topic(&config).await {
            Ok(replicas) if replicas.single_copy() && !config.single_node_broker => {
                return Err(Error::Config(format!(
                    "topic {}: acknowledged writes would live on a single replica (replication \
                     factor {}, min.insync.replicas {}); give the topic more replicas, or set \
                     single_node_broker (KAFKAESQUE_SINGLE_NODE_BROKER=true) if this is a \
                     one-node development broker",
                    config.topic, replicas.factor, replicas.min_insync
                )));
            }
            Ok(_) => {
                let _ = ready.send(true);
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(%error, topic = %config.topic, "cannot create the topic yet")
            }
        }
        tokio::select! {
            () = &mut stopped => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Every minute, forgets the rate-limit buckets of apps gone quiet.
async fn shrink_buckets(limits: api::limit::Limits, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => limits.shrink(),
        }
    }
}
