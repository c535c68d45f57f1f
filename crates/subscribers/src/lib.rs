//! The subscriber-update service.
//!
//! Clients update a subscriber record with `PUT /api/v1/players/{subscription_id}`; the service
//! will validate the request, write it to Kafka and answer at once, while a consumer applies the
//! updates to PostgreSQL at a rate the database can take (see `BRIEF.md`). For now this crate is
//! the service's skeleton, in layers that each know only the one below:
//!
//! - [`config`]: where Kafka, PostgreSQL and the HTTP listener are;
//! - [`db`]: connecting, and creating the service's database when it is missing;
//! - [`migrations`]: the numbered `.sql` files in `migrations/`, applied on start;
//! - [`server`]: the HTTP server with `/healthz` and `/readyz`, run until a shutdown future
//!   completes.

pub mod config;
pub mod db;
pub mod migrations;
pub mod server;

pub use config::Config;
pub use server::{run, serve};

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
    /// The Kafka client could not be created (a malformed setting, not an unreachable broker:
    /// that is reported by `/readyz`).
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
