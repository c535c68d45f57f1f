//! # kafkaesque-bench
//!
//! The tools that show what the consumer and the service do under load: a load generator
//! (`kafkaesque load`) and a benchmark suite (`kafkaesque bench`) that runs every comparison
//! against a baseline measured in the same run, on the local broker and PostgreSQL, and writes a
//! report folder — `report.md`, `results.json` and PNG plots.
//!
//! Layers, each knowing only those below it:
//!
//! - [`stats`]: medians and quantiles — the machine is noisy, so every figure is a median of
//!   repetitions and every claim a ratio against a baseline of the same run;
//! - [`rig`]: the broker, PostgreSQL and a service of our own (topic, database, HTTP listener),
//!   created for one measurement and removed after it;
//! - [`load`]: the traffic (`uniform`, `incident`) and the load generator that sends it through
//!   the HTTP API or straight into the topic;
//! - [`compare`]: one module per comparison, each returning [`report::Figure`]s and plots' series;
//! - [`report`]: the report folder: table, JSON, plots;
//! - [`suite`]: `kafkaesque bench`: sizes, order, and the report.

pub mod compare;
pub mod load;
pub mod report;
pub mod rig;
pub mod stats;
pub mod suite;

pub use load::LoadArgs;

pub use suite::BenchArgs;
