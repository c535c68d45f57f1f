//! Consume, transform, produce: each record of `<topic>` leads to one record in `<out>` (its
//! payload upper-cased, same key). A record completes — and its offset can be committed — only
//! once Kafka has acknowledged its output; a key's outputs are written in the order of their
//! sources; an output that cannot be written fails its record (retried, then dead-lettered).
//! At least once: after a crash, an output may appear twice (see `exactly_once.rs`).
//!
//!     cargo run -p kafkaesque-runtime --example produce -- <topic> <out> [group]

use kafkaesque_runtime::{Consumer, HandlerError, Output, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().json().init();
    let mut args = std::env::args().skip(1);
    let usage = "usage: produce <topic> <out> [group]";
    let topic = args.next().ok_or(usage)?;
    let out = args.next().ok_or(usage)?;
    let group = args.next().unwrap_or_else(|| "produce-example".into());

    let consumer = Consumer::builder()
        .brokers(std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()))
        .group_id(group)
        .topics([topic])
        .concurrency(500)
        .build()?;

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
