//! A key-ordered, at-least-once consumer: records of one key run one at a time and in order,
//! different keys run concurrently (up to 500 at once), and offsets are committed only below
//! what is complete — with completed work above that carried in the commit metadata.
//!
//!     cargo run -p kafkaesque-runtime --example key_ordered -- <topic> [group]

use kafkaesque_runtime::{Consumer, HandlerError, HotKeyPolicy, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().json().init();
    let mut args = std::env::args().skip(1);
    let topic = args.next().ok_or("usage: key_ordered <topic> [group]")?;
    let group = args.next().unwrap_or_else(|| "key-ordered-example".into());

    let consumer = Consumer::builder()
        .brokers(std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()))
        .group_id(group)
        .topics([topic])
        .concurrency(500)
        .hot_key(HotKeyPolicy::Divert) // a flooded key goes to `<topic>.overflow`, in order
        .build()?;

    let handler = |record: Record| async move {
        let key = record.key().map(String::from_utf8_lossy);
        tracing::info!(
            partition = record.partition(),
            offset = record.offset(),
            ?key,
            "processing"
        );
        // Write somewhere idempotent here: a record may be seen again after a crash.
        Ok::<_, HandlerError>(())
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    consumer.run(handler, shutdown).await?;
    Ok(())
}
