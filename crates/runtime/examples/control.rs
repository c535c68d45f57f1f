//! The control handle: a consumer that pauses its topic while a (pretend) downstream is down,
//! halves its concurrency at a busy hour, and on Ctrl-C handles everything it has already
//! fetched before it commits and leaves the group.
//!
//!     cargo run -p kafkaesque-runtime --example control -- <topic> [group]

use std::time::Duration;

use kafkaesque_runtime::{Consumer, HandlerError, Record, ShutdownMode, Target};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().json().init();
    let mut args = std::env::args().skip(1);
    let topic = args.next().ok_or("usage: control <topic> [group]")?;
    let group = args.next().unwrap_or_else(|| "control-example".into());

    let consumer = Consumer::builder()
        .brokers(std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()))
        .group_id(group)
        .topics([topic.as_str()])
        .concurrency(200)
        // Told of partitions given up, once their work is finished and committed.
        .on_revoke(std::sync::Arc::new(
            |tps: &[kafkaesque_runtime::TopicPartition]| {
                tracing::info!(partitions = ?tps, "revoked");
            },
        ))
        .build()?;
    // Got before `run`, usable from any task or thread.
    let control = consumer.control();

    let operator = tokio::spawn(async move {
        // The downstream is down for a while: take nothing more of the topic meanwhile. What
        // is already queued still runs; librdkafka keeps the group membership alive.
        tokio::time::sleep(Duration::from_secs(5)).await;
        control.pause(Target::topic(topic.as_str())).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        control.resume(Target::topic(topic.as_str())).await?;
        // A busy hour: fewer handlers at once. A bad value is refused, naming the field.
        control.set_concurrency(100).await?;
        assert!(control.set_concurrency(0).await.is_err());
        // Ctrl-C: handle what was fetched, commit it, leave.
        tokio::signal::ctrl_c().await?;
        control.shutdown(ShutdownMode::DrainFetched).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });

    let handler = |record: Record| async move {
        tracing::info!(
            partition = record.partition(),
            offset = record.offset(),
            "processing"
        );
        Ok::<_, HandlerError>(())
    };
    // The control handle asks for the shutdown, so the future given here never resolves.
    consumer.run(handler, std::future::pending()).await?;
    operator.await?.map_err(|e| e.to_string())?;
    Ok(())
}
