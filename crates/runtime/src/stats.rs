//! librdkafka's statistics as metrics. librdkafka emits them every `statistics.interval.ms`
//! (5 s unless set) to the group consumer's context; this keeps a useful subset:
//!
//! - per broker (label `broker`, librdkafka's `name`): `kafkaesque_broker_rtt_seconds` (the
//!   window's average) and `kafkaesque_broker_rtt_p99_seconds`, `kafkaesque_broker_outbuf_requests`
//!   (requests waiting to be sent) and `kafkaesque_broker_waitresp_requests` (sent, awaiting an
//!   answer);
//! - for the client: `kafkaesque_client_replyq` (librdkafka's events waiting for the driver to
//!   serve them);
//! - per partition, kept here and published with the other partition gauges (so that they go
//!   with the partition, see [`crate::observe`]): `kafkaesque_partition_lag_messages` (the
//!   consumer lag), `kafkaesque_partition_fetch_queue_messages` and
//!   `kafkaesque_partition_fetch_queue_bytes` (fetched by librdkafka, not yet taken).
//!
//! Every one carries the consumer's labels (group and client id).

use rdkafka::statistics::Statistics;

use kafkaesque_engine::TopicPartition;
use metrics::gauge;

use crate::observe::{Fetching, Observer};

/// Records one statistics report. Called by librdkafka's statistics callback, on the thread
/// that polls the group consumer's main queue (the driver).
pub(crate) fn record(observer: &Observer, stats: Statistics) {
    let labels = &observer.labels;
    for (name, b) in &stats.brokers {
        let l = labels.with(&[("broker", name.clone())]);
        if let Some(rtt) = &b.rtt {
            if rtt.cnt > 0 {
                gauge!("kafkaesque_broker_rtt_seconds", l.clone()).set(rtt.avg as f64 / 1e6);
                gauge!("kafkaesque_broker_rtt_p99_seconds", l.clone()).set(rtt.p99 as f64 / 1e6);
            }
        }
        gauge!("kafkaesque_broker_outbuf_requests", l.clone()).set(b.outbuf_cnt as f64);
        gauge!("kafkaesque_broker_waitresp_requests", l).set(b.waitresp_cnt as f64);
    }
    gauge!("kafkaesque_client_replyq", labels.get()).set(stats.replyq as f64);
    let mut fetching = observer.fetching.lock().expect("fetching lock");
    for (topic, t) in stats.topics {
        for (p, ps) in t.partitions {
            // Partition -1 is librdkafka's internal "unassigned" partition; a negative lag is a
            // partition it does not consume.
            if p >= 0 && ps.consumer_lag >= 0 {
                fetching.insert(
                    TopicPartition::new(topic.as_str(), p),
                    Fetching {
                        lag: ps.consumer_lag,
                        queued_messages: ps.fetchq_cnt,
                        queued_bytes: ps.fetchq_size,
                    },
                );
            }
        }
    }
}
