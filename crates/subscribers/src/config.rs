//! Where the service finds Kafka and PostgreSQL, where it listens, and its limits.
//!
//! Three sources, strongest first: command-line flags and environment variables (the binary
//! reads both into a [`Settings`]), an optional TOML file (also a [`Settings`]), and the defaults
//! below, which work against the rig's local broker and PostgreSQL. Tests build a [`Config`]
//! directly, pointing at their own database, topic and an ephemeral port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;

use crate::secret::{self, Secret};
use crate::{Error, Result};

/// Default for `KAFKA_BROKERS`: the broker `scripts/broker start` runs.
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";

/// Default for `DATABASE_URL`: the project database on the local server `scripts/db ensure`
/// brings up (trust authentication for the `postgres` user).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/kafkaesque";

/// Default for `KAFKAESQUE_LISTEN`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Default for `KAFKAESQUE_TOPIC`.
pub const DEFAULT_TOPIC: &str = "player-updates";

/// `retention.ms` of the topics the service creates unless configured: 7 days (see
/// [`Config::topic_retention`] for why).
pub const DEFAULT_TOPIC_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The shortest admin token the service starts with: a short one can be guessed, and the admin
/// token creates apps and re-keys them.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 24;

/// The service's settings. Its `Debug` output shows no secret.
#[derive(Clone)]
pub struct Config {
    /// Kafka bootstrap servers, `host:port[,host:port...]` (`KAFKA_BROKERS`).
    pub kafka_brokers: String,
    /// The service's PostgreSQL database (`DATABASE_URL`). It is created on start when the
    /// server does not have it yet, so a fresh server needs no manual step. Its `ssl_mode`
    /// says whether connections use TLS (`sslmode` in the URL: `disable`, `prefer` — the
    /// default, as libpq's —, `require`, `verify-ca`, `verify-full`).
    pub database: tokio_postgres::Config,
    /// How the server's certificate is checked (`sslmode=verify-ca|verify-full`, `sslrootcert`
    /// in the URL).
    pub database_tls: crate::db::Tls,
    /// Where the HTTP server listens (`KAFKAESQUE_LISTEN`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// Bearer token of the admin endpoints (`KAFKAESQUE_ADMIN_TOKEN`), at least
    /// [`MIN_ADMIN_TOKEN_CHARS`] characters. While unset, they refuse every request: an operator
    /// control with no password is not a control.
    pub admin_token: Option<Secret>,
    /// How long a process trusts what it learnt of an app key (`KAFKAESQUE_KEY_CACHE_TTL_MS`):
    /// a key rotated or revoked through another process stops working here within this.
    pub key_cache_ttl: Duration,
    /// Each app's requests per second and burst at the HTTP edge
    /// (`KAFKAESQUE_RATE_LIMIT_PER_SECOND`, `KAFKAESQUE_RATE_LIMIT_BURST`); more get 429.
    pub rate_limit: RateLimit,
    /// Apps with a limit of their own (`--app-rate-limit APP=RATE[/BURST]`, `[rate_limits]` in
    /// the file).
    pub rate_limits: BTreeMap<Uuid, RateLimit>,
    /// Longest a write waits for Kafka, topic included, before it is answered 503
    /// (`KAFKAESQUE_WRITE_TIMEOUT_MS`): an outage costs a client this, not half a minute.
    pub write_timeout: Duration,
    /// The updates topic (`KAFKAESQUE_TOPIC`), created on start if missing.
    pub topic: String,
    /// Partitions of the topic when it is created (`KAFKAESQUE_PARTITIONS`). Fixed for the
    /// topic's life: more partitions would move apps between partitions (see [`crate::message`]).
    pub partitions: i32,
    /// `retention.ms` of the topics the service creates — the updates topic and its dead-letter
    /// topic (`KAFKAESQUE_TOPIC_RETENTION_MS`; default 7 days). A deleted device's data leaves
    /// Kafka once this has passed. Seven days outlasts a consumer outage over a long weekend and
    /// gives an operator a working week to replay or inspect dead letters, while keeping a
    /// deleted device's data in Kafka no longer than a week.
    pub topic_retention: Duration,
    /// Consumer group of the consumers (`KAFKAESQUE_GROUP`).
    pub group_id: String,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// The HTTP server's timeouts and caps: what a slow or greedy client can hold.
    pub http: HttpLimits,
    /// How many tags, and how many bytes of them, one subscription may hold.
    pub tag_limit: TagLimit,
    /// PostgreSQL connections per process, at most: the ceiling on what the service asks of the
    /// database however many requests and handlers run.
    pub pool_size: usize,
    /// PostgreSQL connections of the API's own pool (`KAFKAESQUE_API_POOL_SIZE`): the API and the
    /// consumer never wait for each other's connections, so a flood at the edge cannot stall
    /// the consumer, nor a busy consumer the API.
    pub api_pool_size: usize,
    /// `statement_timeout` of every pooled session (`KAFKAESQUE_STATEMENT_TIMEOUT_MS`): a stuck
    /// statement fails instead of holding its connection and row locks.
    pub statement_timeout: Duration,
    /// `idle_in_transaction_session_timeout` of every pooled session
    /// (`KAFKAESQUE_IDLE_IN_TRANSACTION_TIMEOUT_MS`): a transaction left open releases its locks.
    pub idle_in_transaction_timeout: Duration,
    /// Idle time before TCP keepalives probe a PostgreSQL connection
    /// (`KAFKAESQUE_TCP_KEEPALIVE_IDLE_MS`): a server gone without a word is noticed.
    pub tcp_keepalive_idle: Duration,
    /// Children one parent accepts; links beyond are refused, logged and counted.
    pub link_limit: u32,
    /// Handlers running at once in the consumer.
    pub concurrency: usize,
    /// Deliveries one row may hold before its queue coalesces.
    pub key_max_records: usize,
    /// Copies of each partition of the topics the service creates (`KAFKAESQUE_REPLICATION_FACTOR`;
    /// `None`: min(3, brokers)).
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas` of the topics the service creates
    /// (`KAFKAESQUE_MIN_INSYNC_REPLICAS`; `None`: 2 where the factor is 3 or more, else 1).
    pub min_insync_replicas: Option<i32>,
    /// The broker is a one-node development broker (`KAFKAESQUE_SINGLE_NODE_BROKER`): only then
    /// does the service start with its topic keeping acknowledged writes on one replica.
    pub single_node_broker: bool,
    /// librdkafka properties of every Kafka client of the service — producer, consumer, its
    /// dead-letter producer, the admin clients of topic creation and readiness — first of all
    /// the security settings (`security.protocol`, `sasl.*`, `ssl.*`): see
    /// [`Settings::kafka_security_protocol`] and [`Config::kafka_client`].
    pub kafka_properties: Vec<(String, String)>,
    /// librdkafka properties for the producer, e.g. `linger.ms`.
    pub producer_properties: Vec<(String, String)>,
    /// librdkafka properties for the consumer, e.g. `session.timeout.ms`.
    pub consumer_properties: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kafka_brokers: DEFAULT_KAFKA_BROKERS.to_owned(),
            database: DEFAULT_DATABASE_URL
                .parse()
                .expect("DEFAULT_DATABASE_URL is a valid connection URL"),
            listen: DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is a valid socket address"),
            database_tls: crate::db::Tls::default(),
            admin_token: None,
            key_cache_ttl: Duration::from_secs(5),
            rate_limit: RateLimit {
                per_second: 1000,
                burst: 2000,
            },
            rate_limits: BTreeMap::new(),
            write_timeout: Duration::from_secs(5),
            topic: DEFAULT_TOPIC.to_owned(),
            partitions: 8,
            topic_retention: DEFAULT_TOPIC_RETENTION,
            group_id: "kafkaesque-subscribers".to_owned(),
            body_limit: 64 * 1024,
            http: HttpLimits::default(),
            tag_limit: TagLimit::default(),
            pool_size: 16,
            api_pool_size: 4,
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(60),
            tcp_keepalive_idle: Duration::from_secs(30),
            link_limit: 10_000,
            concurrency: 256,
            key_max_records: 64,
            replication_factor: None,
            min_insync_replicas: None,
            single_node_broker: false,
            kafka_properties: Vec::new(),
            producer_properties: Vec::new(),
            consumer_properties: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field named, so that a new one cannot be printed by accident.
        let Config {
            kafka_brokers,
            database,
            database_tls,
            listen,
            admin_token,
            key_cache_ttl,
            rate_limit,
            rate_limits,
            write_timeout,
            topic,
            partitions,
            topic_retention,
            group_id,
            body_limit,
            http,
            tag_limit,
            pool_size,
            api_pool_size,
            statement_timeout,
            idle_in_transaction_timeout,
            tcp_keepalive_idle,
            link_limit,
            concurrency,
            key_max_records,
            replication_factor,
            min_insync_replicas,
            single_node_broker,
            kafka_properties,
            producer_properties,
            consumer_properties,
        } = self;
        f.debug_struct("Config")
            .field("kafka_brokers", kafka_brokers)
            .field("database", &crate::db::describe(database))
            .field("database_tls", database_tls)
            .field("listen", listen)
            .field("admin_token", admin_token)
            .field("key_cache_ttl", key_cache_ttl)
            .field("rate_limit", rate_limit)
            .field("rate_limits", rate_limits)
            .field("write_timeout", write_timeout)
            .field("topic", topic)
            .field("partitions", partitions)
            .field("topic_retention", topic_retention)
            .field("group_id", group_id)
            .field("body_limit", body_limit)
            .field("http", http)
            .field("tag_limit", tag_limit)
            .field("pool_size", pool_size)
            .field("api_pool_size", api_pool_size)
            .field("statement_timeout", statement_timeout)
            .field("idle_in_transaction_timeout", idle_in_transaction_timeout)
            .field("tcp_keepalive_idle", tcp_keepalive_idle)
            .field("link_limit", link_limit)
            .field("concurrency", concurrency)
            .field("key_max_records", key_max_records)
            .field("replication_factor", replication_factor)
            .field("min_insync_replicas", min_insync_replicas)
            .field("single_node_broker", single_node_broker)
            .field("kafka_properties", &secret::redacted(kafka_properties))
            .field(
                "producer_properties",
                &secret::redacted(producer_properties),
            )
            .field(
                "consumer_properties",
                &secret::redacted(consumer_properties),
            )
            .finish()
    }
}

/// A token bucket: `per_second` requests a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// `RATE` or `RATE/BURST` (a burst of one second's rate when left out).
impl FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let number = |n: &str| {
            n.trim()
                .parse::<u32>()
                .map_err(|e| format!("{n:?} is not a count ({e})"))
        };
        let (per_second, burst) = match s.split_once('/') {
            Some((r, b)) => (number(r)?, number(b)?),
            None => (number(s)?, number(s)?),
        };
        Ok(RateLimit { per_second, burst })
    }
}

/// What one client can hold of the HTTP server (`KAFKAESQUE_HEADER_READ_TIMEOUT_MS`,
/// `KAFKAESQUE_REQUEST_TIMEOUT_MS`, `KAFKAESQUE_MAX_CONNECTIONS`,
/// `KAFKAESQUE_MAX_REQUESTS_IN_FLIGHT`); see [`crate::api::edge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest a connection may take to send a request's headers — and so, too, longest an idle
    /// keep-alive connection is kept: a client trickling bytes (slowloris) or sending nothing
    /// loses its connection instead of holding it.
    pub header_read_timeout: Duration,
    /// Longest a request may take, body included, before it is answered 408: a client sending
    /// its body slowly holds a request slot no longer than this. Longer than the write timeout,
    /// so that a write Kafka does not acknowledge is still answered 503.
    pub request_timeout: Duration,
    /// Connections open at once; beyond, new ones wait in the listen backlog until one closes.
    /// Each costs a file descriptor and a task, so a flood of connections cannot exhaust them.
    pub max_connections: usize,
    /// Requests handled at once; beyond, a request is answered 503 with `Retry-After` at once
    /// (load shedding) rather than queued behind the others.
    pub max_requests_in_flight: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            max_connections: 4096,
            max_requests_in_flight: 1024,
        }
    }
}

/// The tags one subscription may hold (`KAFKAESQUE_MAX_TAGS_PER_PLAYER`,
/// `KAFKAESQUE_MAX_TAG_BYTES_PER_PLAYER`): checked at the API for what one request sets, and
/// in the consumer when tags merge into the row. A change that would leave more is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagLimit {
    /// Tags per subscription.
    pub max_tags: usize,
    /// Bytes of the keys and values of a subscription's tags, together (UTF-8).
    pub max_bytes: usize,
}

impl Default for TagLimit {
    fn default() -> Self {
        TagLimit {
            max_tags: 1024,
            max_bytes: 64 * 1024,
        }
    }
}

impl TagLimit {
    /// What `tags` exceed of this limit, naming the figure: `None` when within it.
    pub fn exceeded<'a>(
        &self,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<String> {
        let (mut count, mut bytes) = (0, 0);
        for (k, v) in tags {
            count += 1;
            bytes += k.len() + v.len();
        }
        if count > self.max_tags {
            Some(format!(
                "{count} tags, at most {} per subscription",
                self.max_tags
            ))
        } else if bytes > self.max_bytes {
            Some(format!(
                "{bytes} bytes of tag keys and values, at most {} per subscription",
                self.max_bytes
            ))
        } else {
            None
        }
    }
}

/// An app and its own rate limit.
pub type AppRateLimit = (Uuid, RateLimit);

/// `APP=RATE[/BURST]`: an app's own rate limit, as a flag gives it.
pub fn app_rate_limit(s: &str) -> Result<AppRateLimit, String> {
    let (app, limit) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not APP_ID=RATE[/BURST]"))?;
    let app = Uuid::parse_str(app.trim()).map_err(|e| format!("{app:?}: {e}"))?;
    Ok((app, limit.parse()?))
}

/// `NAME=VALUE`: a librdkafka property, as a flag gives it.
pub fn property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

/// Settings from one source; a field left out takes its value from a weaker source. Its `Debug`
/// output shows no secret.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka_brokers: Option<String>,
    pub database_url: Option<Secret>,
    pub listen: Option<SocketAddr>,
    pub admin_token: Option<Secret>,
    pub key_cache_ttl_ms: Option<u64>,
    pub rate_limit_per_second: Option<u32>,
    pub rate_limit_burst: Option<u32>,
    /// App id → its own limit; an app given by the stronger source replaces the weaker's.
    #[serde(default)]
    pub rate_limits: BTreeMap<Uuid, RateLimit>,
    pub write_timeout_ms: Option<u64>,
    pub topic: Option<String>,
    pub partitions: Option<i32>,
    pub topic_retention_ms: Option<u64>,
    pub group_id: Option<String>,
    pub body_limit: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_requests_in_flight: Option<usize>,
    pub max_tags_per_player: Option<usize>,
    pub max_tag_bytes_per_player: Option<usize>,
    pub pool_size: Option<usize>,
    pub api_pool_size: Option<usize>,
    pub statement_timeout_ms: Option<u64>,
    pub idle_in_transaction_timeout_ms: Option<u64>,
    pub tcp_keepalive_idle_ms: Option<u64>,
    pub link_limit: Option<u32>,
    pub concurrency: Option<usize>,
    pub key_max_records: Option<usize>,
    pub replication_factor: Option<i32>,
    pub min_insync_replicas: Option<i32>,
    pub single_node_broker: Option<bool>,
    /// `security.protocol` of every Kafka client: `PLAINTEXT` (librdkafka's default), `SSL`,
    /// `SASL_PLAINTEXT` or `SASL_SSL`. This and the four settings below are librdkafka's own
    /// properties under a name of their own, for the environment and flags; any other property
    /// of every client goes in [`Settings::kafka_properties`].
    pub kafka_security_protocol: Option<String>,
    /// `sasl.mechanism`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    pub kafka_sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub kafka_sasl_username: Option<String>,
    /// `sasl.password`.
    pub kafka_sasl_password: Option<Secret>,
    /// `ssl.ca.location`: the PEM file of the CA(s) the broker's certificate is checked
    /// against (default: the system's).
    pub kafka_ssl_ca_location: Option<String>,
    /// librdkafka properties of every Kafka client (see [`Config::kafka_properties`]).
    #[serde(default)]
    pub kafka_properties: BTreeMap<String, String>,
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Settings {
            kafka_brokers,
            database_url,
            listen,
            admin_token,
            key_cache_ttl_ms,
            rate_limit_per_second,
            rate_limit_burst,
            rate_limits,
            write_timeout_ms,
            topic,
            partitions,
            topic_retention_ms,
            group_id,
            body_limit,
            header_read_timeout_ms,
            request_timeout_ms,
            max_connections,
            max_requests_in_flight,
            max_tags_per_player,
            max_tag_bytes_per_player,
            pool_size,
            api_pool_size,
            statement_timeout_ms,
            idle_in_transaction_timeout_ms,
            tcp_keepalive_idle_ms,
            link_limit,
            concurrency,
            key_max_records,
            replication_factor,
            min_insync_replicas,
            single_node_broker,
            kafka_security_protocol,
            kafka_sasl_mechanism,
            kafka_sasl_username,
            kafka_sasl_password,
            kafka_ssl_ca_location,
            kafka_properties,
            producer_properties,
            consumer_properties,
        } = self;
        let properties = |p: &BTreeMap<String, String>| -> Vec<(String, String)> {
            p.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        f.debug_struct("Settings")
            .field("kafka_brokers", kafka_brokers)
            .field("database_url", database_url)
            .field("listen", listen)
            .field("admin_token", admin_token)
            .field("key_cache_ttl_ms", key_cache_ttl_ms)
            .field("rate_limit_per_second", rate_limit_per_second)
            .field("rate_limit_burst", rate_limit_burst)
            .field("rate_limits", rate_limits)
            .field("write_timeout_ms", write_timeout_ms)
            .field("topic", topic)
            .field("partitions", partitions)
            .field("topic_retention_ms", topic_retention_ms)
            .field("group_id", group_id)
            .field("body_limit", body_limit)
            .field("header_read_timeout_ms", header_read_timeout_ms)
            .field("request_timeout_ms", request_timeout_ms)
            .field("max_connections", max_connections)
            .field("max_requests_in_flight", max_requests_in_flight)
            .field("max_tags_per_player", max_tags_per_player)
            .field("max_tag_bytes_per_player", max_tag_bytes_per_player)
            .field("pool_size", pool_size)
            .field("api_pool_size", api_pool_size)
            .field("statement_timeout_ms", statement_timeout_ms)
            .field(
                "idle_in_transaction_timeout_ms",
                idle_in_transaction_timeout_ms,
            )
            .field("tcp_keepalive_idle_ms", tcp_keepalive_idle_ms)
            .field("link_limit", link_limit)
            .field("concurrency", concurrency)
            .field("key_max_records", key_max_records)
            .field("replication_factor", replication_factor)
            .field("min_insync_replicas", min_insync_replicas)
            .field("single_node_broker", single_node_broker)
            .field("kafka_security_protocol", kafka_security_protocol)
            .field("kafka_sasl_mechanism", kafka_sasl_mechanism)
            .field("kafka_sasl_username", kafka_sasl_username)
            .field("kafka_sasl_password", kafka_sasl_password)
            .field("kafka_ssl_ca_location", kafka_ssl_ca_location)
            .field(
                "kafka_properties",
                &secret::redacted(&properties(kafka_properties)),
            )
            .field(
                "producer_properties",
                &secret::redacted(&properties(producer_properties)),
            )
            .field(
                "consumer_properties",
                &secret::redacted(&properties(consumer_properties)),
            )
            .finish()
    }
}

impl Settings {
    /// Reads a TOML file with the fields of [`Settings`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// These settings, with what they leave out taken from `weaker`.
    pub fn or(self, weaker: Settings) -> Settings {
        let mut kafka_properties = weaker.kafka_properties;
        kafka_properties.extend(self.kafka_properties);
        let mut producer_properties = weaker.producer_properties;
        producer_properties.extend(self.producer_properties);
        let mut consumer_properties = weaker.consumer_properties;
        consumer_properties.extend(self.consumer_properties);
        let mut rate_limits = weaker.rate_limits;
        rate_limits.extend(self.rate_limits);
        Settings {
            kafka_brokers: self.kafka_brokers.or(weaker.kafka_brokers),
            database_url: self.database_url.or(weaker.database_url),
            listen: self.listen.or(weaker.listen),
            admin_token: self.admin_token.or(weaker.admin_token),
            key_cache_ttl_ms: self.key_cache_ttl_ms.or(weaker.key_cache_ttl_ms),
            rate_limit_per_second: self.rate_limit_per_second.or(weaker.rate_limit_per_second),
            rate_limit_burst: self.rate_limit_burst.or(weaker.rate_limit_burst),
            rate_limits,
            write_timeout_ms: self.write_timeout_ms.or(weaker.write_timeout_ms),
            topic: self.topic.or(weaker.topic),
            partitions: self.partitions.or(weaker.partitions),
            topic_retention_ms: self.topic_retention_ms.or(weaker.topic_retention_ms),
            group_id: self.group_id.or(weaker.group_id),
            body_limit: self.body_limit.or(weaker.body_limit),
            header_read_timeout_ms: self
                .header_read_timeout_ms
                .or(weaker.header_read_timeout_ms),
            request_timeout_ms: self.request_timeout_ms.or(weaker.request_timeout_ms),
            max_connections: self.max_connections.or(weaker.max_connections),
            max_requests_in_flight: self
                .max_requests_in_flight
                .or(weaker.max_requests_in_flight),
            max_tags_per_player: self.max_tags_per_player.or(weaker.max_tags_per_player),
            max_tag_bytes_per_player: self
                .max_tag_bytes_per_player
                .or(weaker.max_tag_bytes_per_player),
            pool_size: self.pool_size.or(weaker.pool_size),
            api_pool_size: self.api_pool_size.or(weaker.api_pool_size),
            statement_timeout_ms: self.statement_timeout_ms.or(weaker.statement_timeout_ms),
            idle_in_transaction_timeout_ms: self
                .idle_in_transaction_timeout_ms
                .or(weaker.idle_in_transaction_timeout_ms),
            tcp_keepalive_idle_ms: self.tcp_keepalive_idle_ms.or(weaker.tcp_keepalive_idle_ms),
            link_limit: self.link_limit.or(weaker.link_limit),
            concurrency: self.concurrency.or(weaker.concurrency),
            key_max_records: self.key_max_records.or(weaker.key_max_records),
            replication_factor: self.replication_factor.or(weaker.replication_factor),
            min_insync_replicas: self.min_insync_replicas.or(weaker.min_insync_replicas),
            single_node_broker: self.single_node_broker.or(weaker.single_node_broker),
            kafka_security_protocol: self
                .kafka_security_protocol
                .or(weaker.kafka_security_protocol),
            kafka_sasl_mechanism: self.kafka_sasl_mechanism.or(weaker.kafka_sasl_mechanism),
            kafka_sasl_username: self.kafka_sasl_username.or(weaker.kafka_sasl_username),
            kafka_sasl_password: self.kafka_sasl_password.or(weaker.kafka_sasl_password),
            kafka_ssl_ca_location: self.kafka_ssl_ca_location.or(weaker.kafka_ssl_ca_location),
            kafka_properties,
            producer_properties,
            consumer_properties,
        }
    }

    /// [`Settings::kafka_properties`] with the named security settings added under their
    /// librdkafka names. A property given both ways with two values is refused: which one
    /// was meant cannot be known.
    fn kafka_client_properties(&self) -> Result<Vec<(String, String)>> {
        let mut properties = self.kafka_properties.clone();
        let named = [
            (
                "security.protocol",
                "kafka_security_protocol",
                self.kafka_security_protocol.as_deref(),
            ),
            (
                "sasl.mechanism",
                "kafka_sasl_mechanism",
                self.kafka_sasl_mechanism.as_deref(),
            ),
            (
                "sasl.username",
                "kafka_sasl_username",
                self.kafka_sasl_username.as_deref(),
            ),
            (
                "sasl.password",
                "kafka_sasl_password",
                self.kafka_sasl_password.as_deref(),
            ),
            (
                "ssl.ca.location",
                "kafka_ssl_ca_location",
                self.kafka_ssl_ca_location.as_deref(),
            ),
        ];
        for (property, setting, value) in named {
            let Some(value) = value else { continue };
            match properties.insert(property.to_owned(), value.to_owned()) {
                Some(other) if other != value => {
                    return Err(Error::Config(format!(
                        "{setting} and kafka_properties.\"{property}\" disagree; give one"
                    )))
                }
                _ => {}
            }
        }
        Ok(properties.into_iter().collect())
    }

    /// The configuration: these settings over the defaults, checked.
    pub fn resolve(self) -> Result<Config> {
        let d = Config::default();
        let ms = |v: Option<u64>, default| v.map_or(default, Duration::from_millis);
        let kafka_properties = self.kafka_client_properties()?;
        let (database, database_tls) = match &self.database_url {
            Some(url) => crate::db::parse(url)?,
            None => (d.database, d.database_tls),
        };
        let config = Config {
            kafka_brokers: self.kafka_brokers.unwrap_or(d.kafka_brokers),
            database,
            database_tls,
            listen: self.listen.unwrap_or(d.listen),
            admin_token: self.admin_token.filter(|t| !t.is_empty()),
            key_cache_ttl: self
                .key_cache_ttl_ms
                .map_or(d.key_cache_ttl, Duration::from_millis),
            rate_limit: RateLimit {
                per_second: self
                    .rate_limit_per_second
                    .unwrap_or(d.rate_limit.per_second),
                burst: self.rate_limit_burst.unwrap_or(d.rate_limit.burst),
            },
            rate_limits: self.rate_limits,
            write_timeout: self
                .write_timeout_ms
                .map_or(d.write_timeout, Duration::from_millis),
            topic: self.topic.unwrap_or(d.topic),
            partitions: self.partitions.unwrap_or(d.partitions),
            topic_retention: self
                .topic_retention_ms
                .map_or(d.topic_retention, Duration::from_millis),
            group_id: self.group_id.unwrap_or(d.group_id),
            body_limit: self.body_limit.unwrap_or(d.body_limit),
            http: HttpLimits {
                header_read_timeout: ms(self.header_read_timeout_ms, d.http.header_read_timeout),
                // Unset, it outlasts a write timeout set longer than its default.
                request_timeout: ms(
                    self.request_timeout_ms,
                    d.http.request_timeout.max(
                        self.write_timeout_ms
                            .map_or(Duration::ZERO, Duration::from_millis)
                            + Duration::from_secs(10),
                    ),
                ),
                max_connections: self.max_connections.unwrap_or(d.http.max_connections),
                max_requests_in_flight: self
                    .max_requests_in_flight
                    .unwrap_or(d.http.max_requests_in_flight),
            },
            tag_limit: TagLimit {
                max_tags: self.max_tags_per_player.unwrap_or(d.tag_limit.max_tags),
                max_bytes: self
                    .max_tag_bytes_per_player
                    .unwrap_or(d.tag_limit.max_bytes),
            },
            pool_size: self.pool_size.unwrap_or(d.pool_size),
            api_pool_size: self.api_pool_size.unwrap_or(d.api_pool_size),
            statement_timeout: ms(self.statement_timeout_ms, d.statement_timeout),
            idle_in_transaction_timeout: ms(
                self.idle_in_transaction_timeout_ms,
                d.idle_in_transaction_timeout,
            ),
            tcp_keepalive_idle: ms(self.tcp_keepalive_idle_ms, d.tcp_keepalive_idle),
            link_limit: self.link_limit.unwrap_or(d.link_limit),
            concurrency: self.concurrency.unwrap_or(d.concurrency),
            key_max_records: self.key_max_records.unwrap_or(d.key_max_records),
            replication_factor: self.replication_factor,
            min_insync_replicas: self.min_insync_replicas,
            single_node_broker: self.single_node_broker.unwrap_or(d.single_node_broker),
            kafka_properties,
            producer_properties: self.producer_properties.into_iter().collect(),
            consumer_properties: self.consumer_properties.into_iter().collect(),
        };
        config.check()?;
        Ok(config)
    }
}

impl Config {
    /// The connection settings of pooled sessions: the service's database with the statement
    /// and idle-in-transaction timeouts and TCP keepalives. (Migrations and readiness checks
    /// connect without the timeouts: a migration may rightly take long.)
    pub fn pooled_database(&self) -> tokio_postgres::Config {
        let mut c = self.database.clone();
        let options = format!(
            "{} -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            c.get_options().unwrap_or_default(),
            self.statement_timeout.as_millis(),
            self.idle_in_transaction_timeout.as_millis()
        );
        c.options(options.trim())
            .keepalives(true)
            .keepalives_idle(self.tcp_keepalive_idle)
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        c
    }

    /// A librdkafka configuration with the bootstrap servers and [`Config::kafka_properties`]:
    /// where every Kafka client of the service starts, so that all of them connect alike.
    pub fn kafka_client(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.kafka_brokers);
        for (k, v) in &self.kafka_properties {
            c.set(k, v);
        }
        c
    }

    /// The replication of the topics the service creates.
    /// `retention.ms` of the topics the service creates, as the broker takes it.
    pub fn topic_retention_ms(&self) -> String {
        self.topic_retention.as_millis().to_string()
    }

    /// The replication of the topics the service creates.
    pub fn replication(&self) -> kafkaesque_runtime::Replication {
        kafkaesque_runtime::Replication {
            factor: self.replication_factor,
            min_insync: self.min_insync_replicas,
        }
    }

    /// Refuses settings that cannot work, naming the field.
    pub fn check(&self) -> Result<()> {
        let zero_limit = |l: &RateLimit| l.per_second == 0 || l.burst == 0;
        let bad = [
            (
                self.admin_token
                    .as_ref()
                    .is_some_and(|t| t.chars() < MIN_ADMIN_TOKEN_CHARS),
                "admin_token (KAFKAESQUE_ADMIN_TOKEN)",
                "must be at least 24 characters",
            ),
            (
                self.key_cache_ttl.is_zero(),
                "key_cache_ttl_ms",
                "must be at least 1",
            ),
            (
                zero_limit(&self.rate_limit),
                "rate_limit_per_second, rate_limit_burst",
                "must be at least 1",
            ),
            (
                self.rate_limits.values().any(zero_limit),
                "rate_limits",
                "every rate and burst must be at least 1",
            ),
            (
                self.write_timeout < Duration::from_millis(100),
                "write_timeout_ms",
                "must be at least 100",
            ),
            (self.topic.trim().is_empty(), "topic", "must not be empty"),
            (self.partitions < 1, "partitions", "must be at least 1"),
            (
                self.topic_retention < Duration::from_secs(60 * 60),
                "topic_retention_ms",
                "must be at least 3600000 (an hour)",
            ),
            (
                self.group_id.trim().is_empty(),
                "group_id",
                "must not be empty",
            ),
            (self.body_limit == 0, "body_limit", "must be at least 1"),
            (
                self.http.header_read_timeout < Duration::from_millis(100),
                "header_read_timeout_ms",
                "must be at least 100",
            ),
            (
                self.http.request_timeout <= self.write_timeout,
                "request_timeout_ms",
                "must be longer than write_timeout_ms, so that a Kafka outage is answered 503",
            ),
            (
                self.http.max_connections == 0,
                "max_connections",
                "must be at least 1",
            ),
            (
                self.http.max_requests_in_flight == 0,
                "max_requests_in_flight",
                "must be at least 1",
            ),
            (
                self.tag_limit.max_tags == 0,
                "max_tags_per_player",
                "must be at least 1",
            ),
            (
                self.tag_limit.max_bytes == 0,
                "max_tag_bytes_per_player",
                "must be at least 1",
            ),
            (self.pool_size == 0, "pool_size", "must be at least 1"),
            (
                self.api_pool_size == 0,
                "api_pool_size",
                "must be at least 1",
            ),
            (
                self.statement_timeout < Duration::from_millis(100),
                "statement_timeout_ms",
                "must be at least 100",
            ),
            (
                self.idle_in_transaction_timeout < Duration::from_millis(100),
                "idle_in_transaction_timeout_ms",
                "must be at least 100",
            ),
            (
                self.tcp_keepalive_idle < Duration::from_secs(1),
                "tcp_keepalive_idle_ms",
                "must be at least 1000",
            ),
            (self.concurrency == 0, "concurrency", "must be at least 1"),
            (
                self.key_max_records < 2,
                "key_max_records",
                "must be at least 2",
            ),
            (
                self.replication_factor.is_some_and(|f| f < 1),
                "replication_factor",
                "must be at least 1",
            ),
            (
                self.min_insync_replicas.is_some_and(|m| m < 1),
                "min_insync_replicas",
                "must be at least 1",
            ),
        ];
        match bad.into_iter().find(|b| b.0) {
            Some((_, field, problem)) => Err(Error::Config(format!("{field}: {problem}"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_the_local_rig() {
        let config = Config::default();
        assert_eq!(config.kafka_brokers, "127.0.0.1:9092");
        assert_eq!(config.database.get_dbname(), Some("kafkaesque"));
        assert_eq!(config.database.get_user(), Some("postgres"));
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(
            (config.topic.as_str(), config.partitions),
            ("player-updates", 8)
        );
        assert_eq!(config.admin_token, None);
        assert_eq!(config.body_limit, 65_536);
        assert_eq!(config.link_limit, 10_000);
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let file: Settings = toml::from_str(
            "topic = \"from-file\"\npartitions = 3\n\
             [consumer_properties]\n\"session.timeout.ms\" = \"6000\"\n",
        )
        .unwrap();
        let flags = Settings {
            topic: Some("from-flags".into()),
            ..Settings::default()
        };
        let config = flags.or(file).resolve().unwrap();
        assert_eq!(config.topic, "from-flags");
        assert_eq!(config.partitions, 3);
        assert_eq!(config.group_id, "kafkaesque-subscribers");
        assert_eq!(
            config.consumer_properties,
            vec![("session.timeout.ms".to_owned(), "6000".to_owned())]
        );
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = toml::from_str::<Settings>("topik = \"x\"").unwrap_err();
        assert!(unknown.to_string().contains("topik"), "{unknown}");
        let zero = Settings {
            partitions: Some(0),
            ..Settings::default()
        };
        let e = zero.resolve().unwrap_err().to_string();
        assert!(e.contains("partitions"), "{e}");
    }

    #[test]
    fn a_short_admin_token_is_refused_naming_the_setting() {
        let short = Settings {
            admin_token: Some("x".repeat(MIN_ADMIN_TOKEN_CHARS - 1).into()),
            ..Settings::default()
        };
        let e = short.resolve().unwrap_err().to_string();
        assert!(
            e.contains("KAFKAESQUE_ADMIN_TOKEN") && e.contains("24"),
            "{e}"
        );
        let long = Settings {
            admin_token: Some("x".repeat(MIN_ADMIN_TOKEN_CHARS).into()),
            ..Settings::default()
        };
        assert!(long.resolve().is_ok());
    }

    #[test]
    fn no_debug_output_shows_a_secret() {
        let (token, password, sasl) = (
            "admin-token-that-must-never-be-printed",
            "db-password-never-printed",
            "sasl-password-never-printed",
        );
        let url = format!("postgres://postgres:{password}@db.example:5432/subs");
        let file: Settings = toml::from_str(&format!(
            "admin_token = \"{token}\"\ndatabase_url = \"{url}\"\n\
             kafka_sasl_password = \"{sasl}\"\n\
             [producer_properties]\n\"sasl.password\" = \"{sasl}\"\n"
        ))
        .unwrap();
        let config = file.clone().resolve().unwrap();
        assert_eq!(config.admin_token.as_deref(), Some(token));
        let shown = [
            format!("{file:?}"),
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{:?}", config.database),
        ];
        for text in &shown {
            for secret in [token, password, sasl] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        assert!(shown[1].contains("db.example:5432/subs"), "{}", shown[1]);
    }

    #[test]
    fn the_kafka_security_settings_reach_every_client_under_librdkafka_names() {
        let file: Settings = toml::from_str(
            "kafka_security_protocol = \"SASL_SSL\"\nkafka_sasl_mechanism = \"SCRAM-SHA-512\"\n\
             kafka_sasl_username = \"svc\"\nkafka_sasl_password = \"pw\"\n\
             kafka_ssl_ca_location = \"/etc/kafka/ca.pem\"\n\
             [kafka_properties]\n\"client.id\" = \"subscribers\"\n",
        )
        .unwrap();
        let config = file.resolve().unwrap();
        let expected: Vec<(String, String)> = [
            ("client.id", "subscribers"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.password", "pw"),
            ("sasl.username", "svc"),
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", "/etc/kafka/ca.pem"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(config.kafka_properties, expected);
        let client = config.kafka_client();
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("bootstrap.servers"), Some("127.0.0.1:9092"));

        let both = Settings {
            kafka_security_protocol: Some("SSL".into()),
            kafka_properties: [("security.protocol".into(), "SASL_SSL".into())].into(),
            ..Settings::default()
        };
        let e = both.resolve().unwrap_err().to_string();
        assert!(e.contains("kafka_security_protocol"), "{e}");
    }

    #[test]
    fn rate_limits_come_from_flags_and_the_file() {
        let app = Uuid::new_v4();
        let file: Settings = toml::from_str(&format!(
            "rate_limit_per_second = 50\n[rate_limits]\n\"{app}\" = {{ per_second = 5, burst = 7 }}\n"
        ))
        .unwrap();
        let config = file.resolve().unwrap();
        assert_eq!(config.rate_limit.per_second, 50);
        assert_eq!(config.rate_limit.burst, 2000);
        let own = RateLimit {
            per_second: 5,
            burst: 7,
        };
        assert_eq!(config.rate_limits[&app], own);
        assert_eq!(app_rate_limit(&format!("{app}=5/7")), Ok((app, own)));
        assert_eq!(app_rate_limit(&format!("{app}=5")).unwrap().1.burst, 5);
        assert!(app_rate_limit("nope=5").is_err());
    }

    #[test]
    fn the_request_timeout_outlasts_the_write_timeout_unless_set_too_short() {
        let long_writes = Settings {
            write_timeout_ms: Some(30_000),
            ..Settings::default()
        };
        let config = long_writes.clone().resolve().unwrap();
        assert_eq!(config.http.request_timeout, Duration::from_secs(40));
        let short = Settings {
            request_timeout_ms: Some(20_000),
            ..long_writes
        };
        let e = short.resolve().unwrap_err().to_string();
        assert!(e.contains("request_timeout_ms"), "{e}");
        assert_eq!(
            Settings::default().resolve().unwrap().http,
            HttpLimits::default()
        );
    }
}
