//! The broker, PostgreSQL, and a service of our own for one measurement.
//!
//! Other people's tests and benchmarks use the same broker and server at the same time, so
//! everything a measurement creates has a unique name (a topic, its `.dlq` and `.overflow`
//! companions, a consumer group, a database) and is removed when its [`ServiceEnv`] is dropped.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use kafkaesque_subscribers::config::{HttpLimits, RateLimit};
use kafkaesque_subscribers::store::Store;
use kafkaesque_subscribers::{db, migrations, Config, Roles};
use kafkaesque_testkit::{unique_name, Broker, Postgres, TestDatabase, TestTopic};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The admin token of the services the benchmarks start.
/// At least `MIN_ADMIN_TOKEN_CHARS` long, like every admin token the service accepts.
pub const ADMIN_TOKEN: &str = "bench-admin-token-of-the-benchmarks";

/// The session settings of every group the benchmarks run, the runtime's own defaults: the plain
/// rdkafka consumers they are compared with get the same, so that no side waits longer for a
/// departed member's partitions.
pub const GROUP_PROPERTIES: [(&str, &str); 2] = [
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "1000"),
];

/// The broker and the PostgreSQL server, both checked to answer.
#[derive(Debug, Clone)]
pub struct Rig {
    pub broker: Broker,
    pub postgres: Postgres,
}

impl Rig {
    /// Connects to `KAFKA_BROKERS` and `DATABASE_URL` (the service's defaults when unset).
    ///
    /// # Errors
    /// When either does not answer within a few seconds; the message names the address and how
    /// to start the local one.
    pub async fn connect() -> Result<Rig> {
        let brokers = std::env::var("KAFKA_BROKERS")
            .unwrap_or_else(|_| kafkaesque_testkit::DEFAULT_KAFKA_BROKERS.to_owned());
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| kafkaesque_testkit::DEFAULT_DATABASE_URL.to_owned());
        let broker = Broker::connect(&brokers).await?;
        let postgres = Postgres::connect(&url).await?;
        Ok(Rig { broker, postgres })
    }

    /// A topic of `partitions` partitions and an empty, migrated database, and a service
    /// configuration pointing at both (listening on any free port).
    ///
    /// # Errors
    /// When the topic or the database cannot be created.
    pub async fn service_env(&self, prefix: &str, partitions: i32) -> Result<ServiceEnv> {
        let topic = self.broker.create_topic(prefix, partitions).await?;
        let database = self.postgres.reserve_database(prefix);
        let config = Config {
            kafka_brokers: self.broker.bootstrap_servers().to_owned(),
            database: database.config().clone(),
            listen: "127.0.0.1:0".parse().expect("a socket address"),
            admin_token: Some(ADMIN_TOKEN.into()),
            // The benchmarks measure the service at full speed: no app may be refused for its
            // rate (the HTTP edge sends tens of thousands a second from one app).
            rate_limit: RateLimit {
                per_second: 10_000_000,
                burst: 10_000_000,
            },
            topic: topic.name().to_owned(),
            partitions,
            group_id: unique_name(prefix),
            single_node_broker: self.broker.brokers() == 1,
            // The benchmarks measure throughput and delay, not the API's fail-fast answer: a
            // write may wait as long as librdkafka's own default would let it. With the service's
            // 5 s, a replay's idempotent producer on a broker just started (its transaction
            // coordinator still loading) saw every write of a 1 s smoke replay expire.
            write_timeout: Duration::from_secs(30),
            // Nor cut by the edge's limits: a request may outlast that write timeout, and the
            // requests in flight (128 at most in the HTTP edge comparison) are far below the cap.
            http: HttpLimits {
                request_timeout: Duration::from_secs(60),
                max_requests_in_flight: 100_000,
                ..HttpLimits::default()
            },
            consumer_properties: GROUP_PROPERTIES
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Config::default()
        };
        db::ensure_database(&config.database).await?;
        let mut client = db::connect(&config.database).await?;
        migrations::migrate(&mut client, &db::describe(&config.database)).await?;
        Ok(ServiceEnv {
            broker: self.broker.clone(),
            topic,
            database,
            config,
        })
    }
}

/// A topic and a database of one measurement, removed on drop (with the topics the consumer
/// may have created beside the topic).
#[derive(Debug)]
pub struct ServiceEnv {
    broker: Broker,
    pub topic: TestTopic,
    pub database: TestDatabase,
    pub config: Config,
}

impl ServiceEnv {
    /// A pool on the database, of the configured size.
    ///
    /// # Errors
    /// When the pool cannot be set up.
    pub fn store(&self) -> Result<Store> {
        Ok(Store::new(&self.config.database, self.config.pool_size)?)
    }

    /// Starts the service (`roles` of it) in this process on a free port and waits until it
    /// answers `/healthz` and its topic is ready.
    ///
    /// # Errors
    /// When it does not answer within 60 s.
    pub async fn start(&self, roles: Roles) -> Result<Service> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(kafkaesque_subscribers::run(
            listener,
            self.config.clone(),
            roles,
            shutdown,
        ));
        let service = Service { addr, stop, task };
        let client = reqwest::Client::new();
        let ready = format!("http://{addr}/readyz");
        for _ in 0..600 {
            if let Ok(r) = client.get(&ready).send().await {
                if r.status().is_success() {
                    return Ok(service);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        service.stop().await.ok();
        anyhow::bail!("the service at {addr} did not become ready within 60 s")
    }
}

impl Drop for ServiceEnv {
    fn drop(&mut self) {
        let companions = [
            format!("{}.dlq", self.topic.name()),
            format!("{}.overflow", self.topic.name()),
        ];
        let config = self.broker.client_config();
        // Best effort, like the testkit's own clean-up: a topic left behind costs broker memory.
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(admin) = config.create::<AdminClient<DefaultClientContext>>() {
                    let names: Vec<&str> = companions.iter().map(String::as_str).collect();
                    let options =
                        AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                    let _ = admin.delete_topics(&names, &options).await;
                }
            });
        })
        .join()
        .ok();
    }
}

/// A service running in this process, and the means to stop it.
#[derive(Debug)]
pub struct Service {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<kafkaesque_subscribers::Result<()>>,
}

impl Service {
    /// `http://host:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Completes the shutdown future and waits for a clean stop.
    ///
    /// # Errors
    /// When the service stopped with an error or took longer than 60 s.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .context("the service did not stop within 60 s")???;
        Ok(())
    }
}
