//! What the consumer costs over a bare rdkafka poll loop: the same topic (4 partitions, 10,000
//! keys), the raw loop and this consumer with a no-op handler, interleaved. Target ≥ 0.9×.

use std::time::Duration;

use anyhow::Result;
use kafkaesque_runtime::{Consumer, Ordering};
use kafkaesque_testkit::Broker;

use super::kafka::{blocking, ours, produce, raw};
use crate::report::Figure;

/// Returns the figures and the raw rate (the concurrency comparison's bound uses it).
///
/// # Errors
/// When the topic cannot be made or a run fails.
pub async fn run(broker: &Broker, records: usize, reps: usize) -> Result<Vec<Figure>> {
    let topic = broker.create_topic("bench-overhead", 4).await?;
    let name = topic.name().to_owned();
    let b = broker.clone();
    blocking(move || produce(&b, &name, records, 10_000)).await?;
    let (mut r, mut o) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (b, name) = (broker.clone(), topic.name().to_owned());
        r.push(blocking(move || raw(&b, &name, records)).await?);
        let builder = Consumer::builder()
            .ordering(Ordering::Key)
            .concurrency(1_000);
        o.push(ours(broker, topic.name(), records, builder, Duration::ZERO).await?);
    }
    let raw = Figure::new("overhead", "raw rdkafka poll loop", "records/s", r).note(format!(
        "{records} records, 4 partitions, 10,000 keys, 100-byte values; a new group per run"
    ));
    let ours = Figure::new("overhead", "kafkaesque, no-op handler", "records/s", o)
        .vs(&raw)
        .at_least("≥ 0.9× raw", 0.9);
    Ok(vec![raw, ours])
}
