//! The broker side of the fixtures: reachability, per-test topics, waiting for assignment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, OwnedMessage};

use crate::{first_socket_addr, tcp_probe, unique_name, Error, Result, REACHABILITY_TIMEOUT};

/// How long topic creation and deletion may take before the fixture gives up.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a waiting fixture looks again at the condition it waits for.
const RECHECK_EVERY: Duration = Duration::from_millis(100);

type Admin = AdminClient<DefaultClientContext>;

/// Checks that a Kafka broker answers at `KAFKA_BROKERS` (or [`crate::DEFAULT_KAFKA_BROKERS`])
/// and returns a handle to it.
///
/// # Panics
/// Within a few seconds, with a message naming the address and `scripts/broker start`, when no
/// broker answers a metadata request there.
pub async fn require_broker() -> Broker {
    let bootstrap =
        std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| crate::DEFAULT_KAFKA_BROKERS.to_owned());
    require_broker_at(&bootstrap).await
}

/// Checks that a cluster of at least three brokers answers at `KAFKA_CLUSTER_BROKERS` (or
/// [`crate::DEFAULT_KAFKA_CLUSTER_BROKERS`]): for the tests that need replication or failover.
///
/// # Panics
/// As [`require_broker`], naming `scripts/broker start --nodes 3`; and when the cluster has
/// fewer than three brokers.
pub async fn require_cluster() -> Broker {
    let bootstrap = std::env::var("KAFKA_CLUSTER_BROKERS")
        .unwrap_or_else(|_| crate::DEFAULT_KAFKA_CLUSTER_BROKERS.to_owned());
    let cluster = match Broker::connect(&bootstrap).await {
        Ok(cluster) => cluster,
        Err(e) => panic!("{e} (the three-broker cluster: `scripts/broker start --nodes 3`)"),
    };
    assert!(
        cluster.brokers() >= 3,
        "the cluster at {bootstrap} has {} brokers, not three",
        cluster.brokers()
    );
    cluster
}

/// [`require_broker`] for an explicit bootstrap list.
///
/// # Panics
/// As [`require_broker`].
pub async fn require_broker_at(bootstrap: &str) -> Broker {
    match Broker::connect(bootstrap).await {
        Ok(broker) => broker,
        Err(e) => panic!("{e}"),
    }
}

/// A broker that answered a metadata request, and an admin client connected to it.
#[derive(Clone)]
pub struct Broker {
    bootstrap: String,
    /// librdkafka properties every client of this broker takes besides `bootstrap.servers`: the
    /// security settings of a [`SecureBroker`]'s user, none for the others.
    properties: Vec<(String, String)>,
    /// How many brokers the cluster's metadata listed: test topics are replicated on up to
    /// three of them, as users' topics are.
    brokers: usize,
    /// Shared with every [`TestTopic`] so that a topic can delete itself when dropped.
    admin: Arc<Admin>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Connects to the broker at `bootstrap` and checks that it answers a metadata request, all
    /// within a few seconds.
    ///
    /// # Errors
    /// [`Error::BrokerUnreachable`] when nothing listens there or it does not answer in time.
    pub async fn connect(bootstrap: &str) -> Result<Self> {
        Self::connect_with(bootstrap, Vec::new()).await
    }

    /// [`Broker::connect`] with librdkafka `properties` (security settings) that every client
    /// made through this handle takes, the admin client of its topics included.
    ///
    /// # Errors
    /// As [`Broker::connect`]; a refused login shows as no answer, with librdkafka's reason.
    pub async fn connect_with(bootstrap: &str, properties: Vec<(String, String)>) -> Result<Self> {
        let unreachable = |reason: String| Error::BrokerUnreachable {
            addr: bootstrap.to_owned(),
            reason,
        };
        // A TCP connect first: librdkafka itself would retry a refused connection until the
        // metadata timeout, and could not tell us that the port is simply closed.
        let addr = first_socket_addr(bootstrap).map_err(unreachable)?;
        tcp_probe(addr).await.map_err(unreachable)?;

        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        for (k, v) in &properties {
            config.set(k, v);
        }
        let admin: Admin = config
            .create()
            .map_err(|e| unreachable(format!("cannot create a client: {e}")))?;
        let admin = Arc::new(admin);
        let probe = Arc::clone(&admin);
        let brokers = blocking(move || {
            probe
                .inner()
                .fetch_metadata(None, REACHABILITY_TIMEOUT)
                .map(|m| m.brokers().len())
        })
        .await
        .map_err(|e| unreachable(format!("no answer to a metadata request: {e}")))?;
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            properties,
            brokers,
            admin,
        })
    }

    /// How many brokers the cluster has.
    pub fn brokers(&self) -> usize {
        self.brokers
    }

    /// The replication factor of test topics: every broker's, up to three.
    pub fn replication_factor(&self) -> i32 {
        self.brokers.clamp(1, 3) as i32
    }

    /// The bootstrap list this broker was reached at, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The librdkafka properties besides `bootstrap.servers` that clients of this broker need
    /// (see [`Broker::connect_with`]).
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }

    /// A client configuration with `bootstrap.servers` (and [`Broker::properties`]) set, to add
    /// a test's own settings to.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// A client configuration for a member of consumer group `group`.
    ///
    /// Sets a short session timeout (6 s, heartbeat every second) besides `bootstrap.servers`
    /// and `group.id`, so that a test that kills a member sees its partitions handed over in
    /// seconds rather than librdkafka's default 45 s.
    pub fn group_config(&self, group: &str) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000");
        config
    }

    /// Creates a topic with a [`unique_name`] built from `prefix` and waits until the broker's
    /// metadata shows all of its `partitions`. The topic is deleted when the returned
    /// [`TestTopic`] is dropped.
    ///
    /// # Errors
    /// When the broker refuses the topic or its metadata does not show it in time.
    pub async fn create_topic(&self, prefix: &str, partitions: i32) -> Result<TestTopic> {
        let name = unique_name(prefix);
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let replication = TopicReplication::Fixed(self.replication_factor());
        let new_topic = NewTopic::new(&name, partitions, replication);
        for result in self.admin.create_topics([&new_topic], &options).await? {
            result.map_err(|(topic, code)| Error::TopicRefused { topic, code })?;
        }
        // From here on the topic exists on the broker: own it, so that it is deleted even if
        // the wait below fails.
        let topic = TestTopic {
            name,
            partitions,
            admin: Arc::clone(&self.admin),
        };
        self.wait_for_partitions(&topic.name, partitions).await?;
        Ok(topic)
    }

    /// The id of the broker leading `partition` of `topic`, if it has a leader.
    ///
    /// # Errors
    /// When the broker does not answer.
    pub async fn leader_of(&self, topic: &str, partition: i32) -> Result<Option<i32>> {
        let admin = Arc::clone(&self.admin);
        let name = topic.to_owned();
        blocking(move || {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(&name), REACHABILITY_TIMEOUT)?;
            Ok(metadata
                .topics()
                .iter()
                .find(|t| t.name() == name)
                .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
                .map(|p| p.leader())
                .filter(|l| *l >= 0))
        })
        .await
    }

    /// How `topic` is replicated: the fewest replicas of any of its partitions, and its
    /// effective `min.insync.replicas`; `None` while the topic does not exist or the broker does
    /// not yet describe its configuration (right after its creation).
    ///
    /// # Errors
    /// When the broker does not answer.
    pub async fn replication_of(&self, topic: &str) -> Result<Option<(i32, i32)>> {
        let admin = Arc::clone(&self.admin);
        let name = topic.to_owned();
        let replicas = blocking(move || {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(&name), REACHABILITY_TIMEOUT)?;
            Ok::<_, rdkafka::error::KafkaError>(
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .and_then(|t| t.partitions().iter().map(|p| p.replicas().len()).min()),
            )
        })
        .await?;
        let Some(replicas) = replicas else {
            return Ok(None);
        };
        let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
        let described = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
            .await?;
        let min_insync = described
            .into_iter()
            .flatten()
            .flat_map(|r| r.entries)
            .find(|e| e.name == "min.insync.replicas")
            .and_then(|e| e.value?.parse().ok());
        Ok(min_insync.map(|m| (replicas as i32, m)))
    }

    /// Waits until the broker's metadata lists `topic` with `partitions` partitions, each with a
    /// leader.
    async fn wait_for_partitions(&self, topic: &str, partitions: i32) -> Result<()> {
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        loop {
            let admin = Arc::clone(&self.admin);
            let name = topic.to_owned();
            let ready = blocking(move || {
                let metadata = admin
                    .inner()
                    .fetch_metadata(Some(&name), REACHABILITY_TIMEOUT)?;
                Ok::<_, rdkafka::error::KafkaError>(metadata.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                }))
            })
            .await?;
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("topic {topic} to show {partitions} partitions in metadata"),
                    after: ADMIN_TIMEOUT,
                });
            }
            tokio::time::sleep(RECHECK_EVERY).await;
        }
    }
}

/// Runs a blocking librdkafka call (one that waits for the broker's answer) on a thread where
/// blocking does not stall other tasks.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(call)
        .await
        .expect("a blocking librdkafka call panicked")
}

/// A topic created for one test; deleted from the broker when dropped.
pub struct TestTopic {
    name: String,
    partitions: i32,
    admin: Arc<Admin>,
}

impl std::fmt::Debug for TestTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTopic")
            .field("name", &self.name)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl TestTopic {
    /// The topic's unique name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many partitions it was created with.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        let admin = Arc::clone(&self.admin);
        let name = std::mem::take(&mut self.name);
        // Best effort: a topic left behind costs broker memory, not correctness, since no other
        // test uses its name.
        crate::block_on_side_runtime(async move {
            let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
            let _ = admin.delete_topics(&[name.as_str()], &options).await;
        });
    }
}

/// Waits until `consumer` has been assigned at least `partitions` partitions by its group.
///
/// A group hands out partitions only while its members poll: this function therefore keeps
/// polling `consumer`, and returns the records that arrived while it waited (in the order they
/// arrived), so that the caller loses none of them. It waits up to `timeout`.
///
/// # Errors
/// [`Error::Timeout`] when the assignment is not complete in time, or the consumer's error.
pub async fn wait_for_assignment<C>(
    consumer: &StreamConsumer<C>,
    partitions: usize,
    timeout: Duration,
) -> Result<Vec<OwnedMessage>>
where
    C: ConsumerContext + 'static,
{
    let deadline = Instant::now() + timeout;
    let mut arrived = Vec::new();
    loop {
        let assigned = consumer.assignment()?.count();
        if assigned >= partitions {
            return Ok(arrived);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("an assignment of {partitions} partitions (have {assigned})"),
                after: timeout,
            });
        }
        let polled: Option<std::result::Result<BorrowedMessage<'_>, _>> =
            tokio::time::timeout(RECHECK_EVERY, consumer.recv())
                .await
                .ok();
        if let Some(message) = polled {
            arrived.push(message?.detach());
        }
    }
}
