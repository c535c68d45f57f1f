//! The chaos run: proves the subscriber service's promise — no acknowledged update lost, per-row
//! order never broken, duplicates only inside the in-flight window — while its processes are
//! killed, its consumer group reshuffled, its brokers frozen, killed and restarted and its
//! database stopped.
//!
//! `kafkaesque chaos [--quick]` starts everything it needs of its own, so it never disturbs the
//! shared broker and PostgreSQL that other tests use: an Apache Kafka cluster (three nodes, or
//! one in the quick run) through `scripts/broker` with its own state folder and ports, a
//! PostgreSQL cluster for the service (the one it stops), the API and three consumers
//! (`kafkaesque api` / `kafkaesque consume`, this same executable). Layers, each knowing only
//! those below it:
//!
//! - [`process`]: starting, signalling and reaping child processes;
//! - [`postgres`], [`broker`]: the PostgreSQL cluster and the Kafka cluster, with the faults
//!   they suffer (stop; freeze, kill, restart); [`metadata`]: which node leads the busiest
//!   partition, and whether every replica is in sync;
//! - [`service`]: the supervisor of the API and the consumer group (kill, join, leave, crashes);
//! - [`schedule`]: the seeded list of faults, and [`profile`] the sizes of a quick and a full run;
//!   [`faults`] carries them out;
//! - [`traffic`]: updates through the HTTP API, each carrying a per-subscription sequence number;
//! - [`history`], [`logs`], [`verify`]: what was applied, in which order, how often;
//!   [`ownership`]: how long partitions went without an owner;
//! - [`verdict`]: the table and whether the run passed;
//! - [`rig`]: brings it all up; [`run`](mod@run) puts everything together.

pub mod broker;
pub mod faults;
pub mod history;
pub mod logs;
pub mod metadata;
pub mod ownership;
pub mod postgres;
pub mod process;
pub mod profile;
pub mod progress;
pub mod rig;
pub mod run;
pub mod schedule;
pub mod service;
pub mod traffic;
pub mod verdict;
pub mod verify;

pub use profile::Profile;
pub use rig::{Options, BROKER_SCRIPT};
pub use run::run;
pub use verdict::Verdict;

/// Errors that stop a chaos run before it can give a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A process could not be started, signalled or waited for.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A piece of the rig could not be set up; the message names it and what to do.
    #[error("{0}")]
    Setup(String),
    /// A statement against the run's own PostgreSQL failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The HTTP API could not be reached during set-up.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
