//! The subscriber-update service.
//!
//! App developers update their subscribers with `PUT /api/v1/players/{id}`. The API validates
//! the request, writes it to Kafka and answers once the broker has acknowledged it; a consumer
//! applies the updates to PostgreSQL at a rate the database can take. Layers,
//! each knowing only those below it:
//!
//! - [`config`]: where Kafka, PostgreSQL and the HTTP listener are, and the limits ([`secret`]:
//!   settings no `Debug` output shows);
//! - [`db`], [`migrations`], [`store`]: the database, its numbered migrations, every statement
//!   (in `sql/`) behind a bounded pool;
//! - [`message`]: what travels through the topic, and why it is keyed by app;
//! - [`producer`]: the topic and the idempotent producer the API writes with;
//! - [`routing`], [`merge`], [`apply`]: the consumer's router (which rows a record writes),
//!   merge (how a hot row's queue coalesces) and handler (how a delivery is applied, replay-safe);
//! - [`skip`], [`busiest`]: the operator's skip list and the busiest apps and rows;
//! - [`consumer`]: the runtime's consumer, put together from the three above;
//! - [`api`]: the HTTP API, admin endpoints, health, metrics and the OpenAPI document;
//! - [`server`]: runs the API, the consumer, or both, until a shutdown future completes.

pub mod api;
pub mod apply;
pub mod busiest;
pub mod config;
pub mod consumer;
pub mod db;
pub mod merge;
pub mod message;
pub mod migrations;
pub mod producer;
pub mod routing;
pub mod secret;
pub mod server;
pub mod skip;
pub mod store;
pub mod telemetry;
pub mod tombstones;

pub use config::{Config, Settings};
pub use server::{run, serve, Roles};

use kafkaesque_runtime::HandlerError;
use tokio_postgres::error::SqlState;

/// Errors of the subscriber-update service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address we tried to bind.
        addr: std::net::SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The HTTP server failed while serving.
    #[error("HTTP server: {0}")]
    Serve(#[source] std::io::Error),
    /// A setting that cannot work, naming it.
    #[error("configuration: {0}")]
    Config(String),
    /// The database connection settings name no database.
    #[error("DATABASE_URL names no database")]
    NoDatabaseName,
    /// PostgreSQL refused a connection or a statement.
    #[error("PostgreSQL at {server}: {source}")]
    Postgres {
        /// `host:port/database` of the server, for the operator.
        server: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool in time.
    #[error("PostgreSQL pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A numbered migration failed; it was rolled back and later ones were not attempted.
    #[error("migration {version:04} ({name}) failed: {source}")]
    Migration {
        /// The migration's number.
        version: i32,
        /// The migration's name.
        name: &'static str,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// The Kafka client could not be created or refused an operation.
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The consumer stopped with an error it cannot recover from.
    #[error("consumer: {0}")]
    Consumer(#[from] kafkaesque_runtime::Error),
}

impl Error {
    /// How the consumer should treat this failure of a handler: an unreachable or overloaded
    /// database is transient (retried without giving up), a statement the data makes fail can
    /// never succeed (dead-lettered: `invalid` for data exceptions and integrity violations,
    /// classes 22 and 23; `program_limit` for a program limit, class 54 — a row or a value too
    /// large, too deep, too many columns: the same record fails the same way every time),
    /// anything else is retried a few times.
    pub fn into_handler_error(self) -> HandlerError {
        let code = match &self {
            Error::Database(e) => e.code().cloned(),
            Error::Pool(_) => return HandlerError::transient(self),
            _ => return HandlerError::retry(self),
        };
        match code {
            None => HandlerError::transient(self),
            Some(c)
                if c == SqlState::T_R_SERIALIZATION_FAILURE
                    || c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                HandlerError::retry(self)
            }
            Some(c) if c.code().starts_with("22") || c.code().starts_with("23") => {
                HandlerError::rejected("invalid", self)
            }
            Some(c) if c.code().starts_with("54") => {
                metrics::counter!("subscribers_program_limit_total").increment(1);
                HandlerError::rejected("program_limit", self)
            }
            Some(_) => HandlerError::transient(self),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
