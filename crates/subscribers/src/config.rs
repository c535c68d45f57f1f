//! Where the service finds Kafka and PostgreSQL, and where it listens.
//!
//! The binary fills a [`Config`] from flags and the environment variables named below; tests
//! build one directly, pointing at their own database and an ephemeral port.

use std::net::SocketAddr;

/// Default for `KAFKA_BROKERS`: the broker `scripts/broker start` runs.
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";

/// Default for `DATABASE_URL`: the project database on the local server `scripts/db ensure`
/// brings up (trust authentication for the `postgres` user).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/kafkaesque";

/// Default for `KAFKAESQUE_LISTEN`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kafka bootstrap servers, `host:port[,host:port...]` (`KAFKA_BROKERS`).
    pub kafka_brokers: String,
    /// The service's PostgreSQL database (`DATABASE_URL`). It is created on start when the
    /// server does not have it yet, so a fresh server needs no manual step.
    pub database: tokio_postgres::Config,
    /// Where the HTTP server listens (`KAFKAESQUE_LISTEN`); port 0 picks a free port.
    pub listen: SocketAddr,
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
    }
}
