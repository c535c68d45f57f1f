//! A batch consumer: the handler takes up to 100 records per call (or what came within 20 ms),
//! as a bulk write to a database would. A batch holds at most one record per key, so a key's
//! records still run one at a time and in offset order, across batches too; a failed batch
//! fails each of its records once, and each is retried on its own.
//!
//!     cargo run -p kafkaesque-runtime --example batch -- <topic> [group]

use std::time::Duration;

use kafkaesque_runtime::{Consumer, HandlerError, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().json().init();
    let mut args = std::env::args().skip(1);
    let topic = args.next().ok_or("usage: batch <topic> [group]")?;
    let group = args.next().unwrap_or_else(|| "batch-example".into());

    let consumer = Consumer::builder()
        .brokers(std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()))
        .group_id(group)
        .topics([topic])
        .concurrency(400) // room for four batches of 100 at once
        .batch(100, Duration::from_millis(20))
        .handler_timeout(Duration::from_secs(30)) // a hung call fails its records: retried
        .stuck_key_alarm(Duration::from_secs(60))
        .build()?;

    let handler = |batch: Vec<Record>| async move {
        let first = batch.first().map(|r| (r.partition(), r.offset()));
        tracing::info!(records = batch.len(), ?first, "writing a batch");
        // One idempotent bulk write here (e.g. an upsert of every row): records may be seen
        // again after a crash, and every record of a failed batch is retried.
        Ok::<_, HandlerError>(())
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    consumer.run_batches(handler, shutdown).await?;
    Ok(())
}
