//! Exactly-once consume, transform, produce: like `produce.rs`, but the outputs, any dead
//! letters and the consumed offsets commit in one Kafka transaction per commit interval, so a
//! reader of `<out>` with `isolation.level=read_committed` sees each output once, whatever
//! crashes or rebalances happen. The library sets the producer's `transactional.id`
//! (`kafkaesque.<group>.<instance>`); giving each process a stable `group.instance.id` (here
//! the optional third argument) lets a restarted process abort its predecessor's open
//! transaction at once rather than after `transaction.timeout.ms`.
//!
//!     cargo run -p kafkaesque-runtime --example exactly_once -- <topic> <out> [instance]

use std::time::Duration;

use kafkaesque_runtime::{Consumer, HandlerError, Output, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().json().init();
    let mut args = std::env::args().skip(1);
    let usage = "usage: exactly_once <topic> <out> [instance]";
    let topic = args.next().ok_or(usage)?;
    let out = args.next().ok_or(usage)?;

    let mut builder = Consumer::builder()
        .brokers(std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()))
        .group_id("exactly-once-example")
        .topics([topic])
        .concurrency(500)
        // One transaction per interval: the longer, the fewer transactions, and the later a
        // read_committed reader sees the outputs.
        .commit_interval(Duration::from_millis(100))
        .exactly_once();
    if let Some(instance) = args.next() {
        builder = builder.set("group.instance.id", instance);
    }
    let consumer = builder.build()?;

    let handler = move |record: Record| {
        let out = out.clone();
        async move {
            let upper = record.payload().unwrap_or_default().to_ascii_uppercase();
            let mut output = Output::new(out).payload(upper);
            if let Some(key) = record.key_bytes().cloned() {
                output = output.key(key);
            }
            Ok::<_, HandlerError>(vec![output])
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    consumer.run_producing(handler, shutdown).await?;
    Ok(())
}
