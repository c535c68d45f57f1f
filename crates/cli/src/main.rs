//! `kafkaesque`: one binary, a subcommand per job. It parses arguments, sets up JSON logs and
//! hands over to the library crates; nothing else lives here.
// The doc comments of the argument structs are clap's help text, where `[default: ...]` is
// the convention; rustdoc would read the one holding a URL as a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kafkaesque_subscribers::config::property;
use kafkaesque_subscribers::{Roles, Settings};
use tracing_subscriber::EnvFilter;

mod bench;
mod chaos;

/// Records, requests and their buffers are often freed on another thread than the one that
/// allocated them (a consumer record whose handler waits is freed on a tokio worker): glibc's
/// allocator serialises such frees on an arena lock, mimalloc hands them back without one (the
/// consumer's no-op rate rose by a third with it, when its fetcher thread still allocated every
/// record; see docs/benchmarks.md). librdkafka keeps the C allocator: see the same document.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "kafkaesque", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the subscriber-update service — API and consumer — until Ctrl-C or SIGTERM.
    Serve(ServiceArgs),
    /// Run only the HTTP API (scale it apart from the consumer).
    Api(ServiceArgs),
    /// Run only the consumer that applies updates to PostgreSQL (with health, metrics, admin).
    Consume(ServiceArgs),
    /// Run the service under faults (SIGKILLs, rebalances, a frozen and a restarted broker, a
    /// database outage) and verify from PostgreSQL that no acknowledged update was lost.
    Chaos(chaos::ChaosArgs),
    /// Send realistic traffic (uniform, or the incident) to a running service, through its HTTP
    /// API or straight into its topic, and sum up what it acknowledged and how fast.
    Load(kafkaesque_bench::LoadArgs),
    /// Run the benchmark comparisons on the local broker and PostgreSQL and write a report
    /// (report.md, results.json, PNG plots).
    Bench(kafkaesque_bench::BenchArgs),
}

/// Every setting, from a flag or its environment variable; what neither gives comes from the
/// `--config` file, then from the defaults, which suit the local rig.
#[derive(Debug, Args)]
struct ServiceArgs {
    /// TOML file with any of the settings below (flags and environment variables win).
    #[arg(long, env = "KAFKAESQUE_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers, host:port[,host:port...] [default: 127.0.0.1:9092]
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// PostgreSQL database of the service; created if the server lacks it
    /// [default: postgres://postgres@127.0.0.1:5432/kafkaesque]
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Address the HTTP server listens on (port 0: any free port, logged on start)
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "KAFKAESQUE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Bearer token of the admin endpoints, at least 24 characters; while unset they refuse
    /// every request.
    #[arg(long, env = "KAFKAESQUE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// How long a process trusts what it learnt of an app key, in ms: a rotated or revoked key
    /// stops working everywhere within this [default: 5000]
    #[arg(long, env = "KAFKAESQUE_KEY_CACHE_TTL_MS")]
    key_cache_ttl_ms: Option<u64>,
    /// Requests per second each app may make (token bucket); more get 429 [default: 1000]
    #[arg(long, env = "KAFKAESQUE_RATE_LIMIT_PER_SECOND")]
    rate_limit_per_second: Option<u32>,
    /// Requests each app may make at once [default: 2000]
    #[arg(long, env = "KAFKAESQUE_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<u32>,
    /// An app's own limit, APP_ID=RATE[/BURST] (repeatable; in the environment, comma-separated)
    #[arg(long = "app-rate-limit", env = "KAFKAESQUE_APP_RATE_LIMITS", value_delimiter = ',',
          value_parser = kafkaesque_subscribers::config::app_rate_limit)]
    app_rate_limits: Vec<kafkaesque_subscribers::config::AppRateLimit>,
    /// Longest a write waits for Kafka before it is answered 503, in ms [default: 5000]
    #[arg(long, env = "KAFKAESQUE_WRITE_TIMEOUT_MS")]
    write_timeout_ms: Option<u64>,
    /// The updates topic, created on start if missing [default: player-updates]
    #[arg(long, env = "KAFKAESQUE_TOPIC")]
    topic: Option<String>,
    /// Partitions of the topic when it is created [default: 8]
    #[arg(long, env = "KAFKAESQUE_PARTITIONS")]
    partitions: Option<i32>,
    /// retention.ms of the topics the service creates (updates, dead letters) [default: 604800000, 7 days]
    #[arg(long, env = "KAFKAESQUE_TOPIC_RETENTION_MS")]
    topic_retention_ms: Option<u64>,
    /// Consumer group [default: kafkaesque-subscribers]
    #[arg(long, env = "KAFKAESQUE_GROUP")]
    group_id: Option<String>,
    /// Largest request body in bytes [default: 65536]
    #[arg(long, env = "KAFKAESQUE_BODY_LIMIT")]
    body_limit: Option<usize>,
    /// Longest a connection may take to send a request's headers, and longest an idle
    /// keep-alive connection is kept, in ms [default: 10000]
    #[arg(long, env = "KAFKAESQUE_HEADER_READ_TIMEOUT_MS")]
    header_read_timeout_ms: Option<u64>,
    /// Longest a request may take, body included, before it is answered 408, in ms; longer than
    /// the write timeout [default: 15000]
    #[arg(long, env = "KAFKAESQUE_REQUEST_TIMEOUT_MS")]
    request_timeout_ms: Option<u64>,
    /// HTTP connections open at once; more wait until one closes [default: 4096]
    #[arg(long, env = "KAFKAESQUE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// HTTP requests handled at once; more are answered 503 with Retry-After [default: 1024]
    #[arg(long, env = "KAFKAESQUE_MAX_REQUESTS_IN_FLIGHT")]
    max_requests_in_flight: Option<usize>,
    /// Tags one subscription may hold [default: 1024]
    #[arg(long, env = "KAFKAESQUE_MAX_TAGS_PER_PLAYER")]
    max_tags_per_player: Option<usize>,
    /// Bytes of tag keys and values one subscription may hold [default: 65536]
    #[arg(long, env = "KAFKAESQUE_MAX_TAG_BYTES_PER_PLAYER")]
    max_tag_bytes_per_player: Option<usize>,
    /// PostgreSQL connections per process, at most [default: 16]
    #[arg(long, env = "KAFKAESQUE_POOL_SIZE")]
    pool_size: Option<usize>,
    /// PostgreSQL connections of the API's own pool, apart from the consumer's [default: 4]
    #[arg(long, env = "KAFKAESQUE_API_POOL_SIZE")]
    api_pool_size: Option<usize>,
    /// statement_timeout of pooled PostgreSQL sessions, in ms [default: 30000]
    #[arg(long, env = "KAFKAESQUE_STATEMENT_TIMEOUT_MS")]
    statement_timeout_ms: Option<u64>,
    /// idle_in_transaction_session_timeout of pooled sessions, in ms [default: 60000]
    #[arg(long, env = "KAFKAESQUE_IDLE_IN_TRANSACTION_TIMEOUT_MS")]
    idle_in_transaction_timeout_ms: Option<u64>,
    /// Idle time before TCP keepalives probe a PostgreSQL connection, in ms [default: 30000]
    #[arg(long, env = "KAFKAESQUE_TCP_KEEPALIVE_IDLE_MS")]
    tcp_keepalive_idle_ms: Option<u64>,
    /// Children one parent accepts [default: 10000]
    #[arg(long, env = "KAFKAESQUE_LINK_LIMIT")]
    link_limit: Option<u32>,
    /// Handlers running at once in the consumer [default: 256]
    #[arg(long, env = "KAFKAESQUE_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Deliveries one row may hold before its queue coalesces [default: 64]
    #[arg(long, env = "KAFKAESQUE_KEY_MAX_RECORDS")]
    key_max_records: Option<usize>,
    /// Copies of each partition of the topics the service creates [default: min(3, brokers)]
    #[arg(long, env = "KAFKAESQUE_REPLICATION_FACTOR")]
    replication_factor: Option<i32>,
    /// min.insync.replicas of the topics the service creates [default: 2 where the factor is 3
    /// or more, else 1]
    #[arg(long, env = "KAFKAESQUE_MIN_INSYNC_REPLICAS")]
    min_insync_replicas: Option<i32>,
    /// The broker is a one-node development broker: start even though acknowledged writes
    /// then live on one replica (refused otherwise)
    #[arg(long, env = "KAFKAESQUE_SINGLE_NODE_BROKER")]
    single_node_broker: Option<bool>,
    /// security.protocol of every Kafka client: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    /// [default: PLAINTEXT]
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL")]
    kafka_security_protocol: Option<String>,
    /// sasl.mechanism of every Kafka client: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    kafka_sasl_mechanism: Option<String>,
    /// sasl.username of every Kafka client
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    kafka_sasl_username: Option<String>,
    /// sasl.password of every Kafka client (rather from the environment or the file: a flag is
    /// visible to every user of the machine)
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    kafka_sasl_password: Option<String>,
    /// ssl.ca.location of every Kafka client: PEM file of the CA(s) that signed the brokers'
    /// certificates [default: the system's]
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    kafka_ssl_ca_location: Option<String>,
    /// A librdkafka property of every Kafka client (producer, consumer, admin), NAME=VALUE
    /// (repeatable), e.g. ssl.certificate.location=client.pem.
    #[arg(long = "kafka-set", value_parser = property)]
    kafka_properties: Vec<(String, String)>,
    /// A librdkafka property for the producer, NAME=VALUE (repeatable).
    #[arg(long = "producer-set", value_parser = property)]
    producer_properties: Vec<(String, String)>,
    /// A librdkafka property for the consumer, NAME=VALUE (repeatable), e.g.
    /// session.timeout.ms=6000.
    #[arg(long = "consumer-set", value_parser = property)]
    consumer_properties: Vec<(String, String)>,
}

impl ServiceArgs {
    fn settings(self) -> kafkaesque_subscribers::Result<Settings> {
        let file = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        let flags = Settings {
            kafka_brokers: self.kafka_brokers,
            database_url: self.database_url.map(Into::into),
            listen: self.listen,
            admin_token: self.admin_token.map(Into::into),
            key_cache_ttl_ms: self.key_cache_ttl_ms,
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_burst: self.rate_limit_burst,
            rate_limits: self.app_rate_limits.into_iter().collect(),
            write_timeout_ms: self.write_timeout_ms,
            topic: self.topic,
            partitions: self.partitions,
            topic_retention_ms: self.topic_retention_ms,
            group_id: self.group_id,
            body_limit: self.body_limit,
            header_read_timeout_ms: self.header_read_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            max_connections: self.max_connections,
            max_requests_in_flight: self.max_requests_in_flight,
            max_tags_per_player: self.max_tags_per_player,
            max_tag_bytes_per_player: self.max_tag_bytes_per_player,
            pool_size: self.pool_size,
            api_pool_size: self.api_pool_size,
            statement_timeout_ms: self.statement_timeout_ms,
            idle_in_transaction_timeout_ms: self.idle_in_transaction_timeout_ms,
            tcp_keepalive_idle_ms: self.tcp_keepalive_idle_ms,
            link_limit: self.link_limit,
            concurrency: self.concurrency,
            key_max_records: self.key_max_records,
            replication_factor: self.replication_factor,
            min_insync_replicas: self.min_insync_replicas,
            single_node_broker: self.single_node_broker,
            kafka_security_protocol: self.kafka_security_protocol,
            kafka_sasl_mechanism: self.kafka_sasl_mechanism,
            kafka_sasl_username: self.kafka_sasl_username,
            kafka_sasl_password: self.kafka_sasl_password.map(Into::into),
            kafka_ssl_ca_location: self.kafka_ssl_ca_location,
            kafka_properties: self.kafka_properties.into_iter().collect(),
            producer_properties: self.producer_properties.into_iter().collect(),
            consumer_properties: self.consumer_properties.into_iter().collect(),
        };
        Ok(flags.or(file))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The load generator, the benchmark and the chaos run print their results on stdout, for
    // people and scripts to read: their logs go to stderr. The first two print their own
    // progress too, so they log only warnings and errors.
    let tool = matches!(
        cli.command,
        Command::Load(_) | Command::Bench(_) | Command::Chaos(_)
    );
    let quiet = matches!(cli.command, Command::Load(_) | Command::Bench(_));
    let logs = tracing_subscriber::fmt().json().with_env_filter(
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(if quiet { "warn" } else { "info" })),
    );
    if tool {
        logs.with_writer(std::io::stderr).init();
    } else {
        logs.init();
    }

    let (args, roles) = match cli.command {
        Command::Serve(args) => (args, Roles::ALL),
        Command::Api(args) => (args, Roles::API),
        Command::Consume(args) => (args, Roles::CONSUMER),
        Command::Chaos(args) => return chaos::run(args).await,
        Command::Load(args) => return bench::load(args).await,
        Command::Bench(args) => return bench::bench(args).await,
    };
    let outcome = match args.settings().and_then(Settings::resolve) {
        Ok(config) => kafkaesque_subscribers::serve(config, roles, shutdown_signal()).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "exiting");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first Ctrl-C or SIGTERM (what `kill` and service managers send).
///
/// The handlers are installed here, before the service starts, not when the returned future is
/// first polled: the service logs "listening" before it waits on the future, and a SIGTERM sent
/// in between would otherwise end the process with the signal's default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::error!(%error, "cannot listen for {name}");
            None
        }
    };
    let (interrupt, terminate) = (
        listen(SignalKind::interrupt(), "Ctrl-C"),
        listen(SignalKind::terminate(), "SIGTERM"),
    );
    let wait = |s: Option<tokio::signal::unix::Signal>| async move {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    async move {
        tokio::select! {
            () = wait(interrupt) => tracing::info!("Ctrl-C: shutting down"),
            () = wait(terminate) => tracing::info!("SIGTERM: shutting down"),
        }
    }
}
