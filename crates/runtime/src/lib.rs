//! The Kafka edge of kafkaesque.
//!
//! This crate will hold the rdkafka consumer loop that feeds polled records into the sans-I/O
//! engine (`kafkaesque-engine`), runs the handlers it schedules, and commits the offsets it
//! releases. Until that loop exists, `tests/rig_e2e.rs` proves the ground it will stand on: a
//! plain rdkafka consumer group against the real broker, writing into a real PostgreSQL.
