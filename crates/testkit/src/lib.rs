//! Fixtures shared by every kafkaesque test that talks to a real broker or a real database.
//!
//! Every end-to-end test in this workspace runs against a real Apache Kafka broker and a real
//! PostgreSQL. This crate keeps those tests short and independent of each other:
//!
//! - [`require_broker`] and [`require_postgres`] check that the service is there, within a few
//!   seconds, and otherwise panic with a message that names what is missing and the command that
//!   brings it up. A test never hangs waiting for a service that is not running.
//! - [`unique_name`] gives every test its own topics, consumer groups and databases, so tests can
//!   run in parallel and again and again against the same broker and server.
//! - [`Broker::create_topic`] and [`Postgres::create_database`] hand out a [`TestTopic`] and a
//!   [`TestDatabase`] that are deleted again when they go out of scope, even when the test fails.
//! - [`wait_for_assignment`] waits for a consumer group to hand partitions to a consumer,
//!   instead of sleeping; [`Broker::group_config`] keeps a departed member's session short.
//!
//! Where the services are: `KAFKA_BROKERS` (default [`DEFAULT_KAFKA_BROKERS`]) and `DATABASE_URL`
//! (default [`DEFAULT_DATABASE_URL`]); the same variables the service itself reads. The broker
//! with a SASL_SSL listener: `KAFKA_SECURE_BROKERS` and `KAFKA_SECURE_CA_LOCATION` (see
//! [`require_secure_broker`]). Test databases
//! are created on the server `DATABASE_URL` points at.

mod kafka;
mod postgres;
mod secure;

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub use kafka::{
    require_broker, require_broker_at, require_cluster, wait_for_assignment, Broker, TestTopic,
};
pub use postgres::{require_postgres, require_postgres_at, Postgres, TestDatabase};
pub use secure::{
    default_ca_location, require_secure_broker, ScramUser, SecureBroker, SCRAM_MECHANISM,
};

/// Where the broker listens when `KAFKA_BROKERS` is not set: the address `scripts/broker start`
/// binds.
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";

/// Default for `KAFKA_CLUSTER_BROKERS`: the three-broker cluster `scripts/broker start --nodes 3`
/// runs, for the tests that need replication or failover.
pub const DEFAULT_KAFKA_CLUSTER_BROKERS: &str = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094";

/// Default for `KAFKA_SECURE_BROKERS`: the SASL_SSL listener of the broker `scripts/broker start
/// --secure` runs, for the tests of secure transport.
pub const DEFAULT_KAFKA_SECURE_BROKERS: &str = "127.0.0.1:29092";

/// The PostgreSQL server used when `DATABASE_URL` is not set: the one `scripts/db ensure` brings
/// up, with trust authentication for the `postgres` user.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/kafkaesque";

/// How long a reachability check may take before it gives up: short, because a missing service
/// should be reported at once rather than discovered by a test that times out minutes later.
pub const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(3);

/// Errors from the fixtures. Tests usually turn them into a failure with `?` or `expect`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing answers at the broker address, or it does not speak Kafka.
    #[error("Kafka broker not reachable at {addr} ({reason}) — run `scripts/broker start`")]
    BrokerUnreachable {
        /// The bootstrap address that was tried.
        addr: String,
        /// What went wrong, as close to the cause as we could tell.
        reason: String,
    },
    /// Nothing answers at the PostgreSQL address, or it refuses our queries.
    #[error("PostgreSQL not reachable at {addr} ({reason}) — run `scripts/db ensure`")]
    PostgresUnreachable {
        /// The host and port that were tried.
        addr: String,
        /// What went wrong, as close to the cause as we could tell.
        reason: String,
    },
    /// The broker refused to create a topic.
    #[error("the broker refused to create topic {topic}: {code}")]
    TopicRefused {
        /// The topic's name.
        topic: String,
        /// The broker's error code.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// A condition a fixture waits for did not come true in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// A set-up step outside the test's process (a script) failed.
    #[error("{what} failed: {output}")]
    Setup {
        /// What was being set up.
        what: String,
        /// What the step said.
        output: String,
    },
    /// The broker or the client library reported an error.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// PostgreSQL reported an error.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// The result type of the fixtures.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A name no other test run will use: `prefix`, then a random suffix.
///
/// Valid as a Kafka topic name, a consumer group id and (after [`database_name`]) a PostgreSQL
/// database name, as long as `prefix` is made of ASCII letters, digits and `-`.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("kq-{prefix}-{}", &suffix[..12])
}

/// Turns a [`unique_name`] into a PostgreSQL identifier that needs no quoting: lower case,
/// `_` for `-`, at most 63 bytes.
pub fn database_name(name: &str) -> String {
    let mut ident: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    ident.truncate(63);
    ident
}

/// The first address of a `host:port` list such as `KAFKA_BROKERS`, resolved.
fn first_socket_addr(list: &str) -> Result<SocketAddr, String> {
    let first = list.split(',').next().unwrap_or_default().trim();
    let first = first.strip_prefix("tcp://").unwrap_or(first);
    first
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {first:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{first:?} resolves to no address"))
}

/// Connects a TCP socket within [`REACHABILITY_TIMEOUT`]: the cheap first half of every
/// reachability check, which turns "connection refused" into an answer in milliseconds.
async fn tcp_probe(addr: SocketAddr) -> Result<(), String> {
    match tokio::time::timeout(REACHABILITY_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("TCP connect to {addr}: {e}")),
        Err(_) => Err(format!(
            "TCP connect to {addr}: no answer within {REACHABILITY_TIMEOUT:?}"
        )),
    }
}

/// Runs `future` to completion on a fresh single-threaded runtime in a thread of its own.
///
/// Used by the `Drop` impls that clean up topics and databases: `drop` is synchronous and may run
/// inside a test's runtime (where blocking on that runtime would panic) or after it has gone.
fn block_on_side_runtime<F>(future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
            .map(|runtime| runtime.block_on(future))
    })
    .join()
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_keep_their_prefix() {
        let a = unique_name("rig");
        let b = unique_name("rig");
        assert_ne!(a, b);
        assert!(a.starts_with("kq-rig-"), "{a}");
    }

    #[test]
    fn database_names_need_no_quoting() {
        let name = database_name("kq-Rig-E2E-0123456789ab");
        assert_eq!(name, "kq_rig_e2e_0123456789ab");
        assert_eq!(database_name(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn first_socket_addr_takes_the_first_of_a_list() {
        let addr = first_socket_addr("127.0.0.1:9092,127.0.0.1:9093").unwrap();
        assert_eq!(addr, "127.0.0.1:9092".parse().unwrap());
        let addr = first_socket_addr("tcp://127.0.0.1:19092").unwrap();
        assert_eq!(addr.port(), 19092);
        assert!(first_socket_addr("").is_err());
    }
}
