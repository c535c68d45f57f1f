//! The overflow consumer: reads back the records of keys diverted to the overflow topics. It is
//! assigned by hand, each overflow partition alongside its main partition, and commits in a
//! group of its own (`<group>.overflow`).

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use kafkaesque_engine::{PartitionHandle, Role, TopicPartition};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::warn;

use super::State;
use crate::callbacks::{forward_user_callbacks, UserCallbacks};
use crate::context::forward_commits;
use crate::events::EventTx;
use crate::record::{headers, Record, RecordData};

/// The overflow consumer's context: commit results go to the driver as events, because this
/// consumer is polled while the driver holds its state.
pub(crate) struct OverflowContext {
    tx: Mutex<EventTx>,
    user: UserCallbacks,
}

impl OverflowContext {
    pub(crate) fn new(tx: EventTx, user: UserCallbacks) -> Self {
        OverflowContext {
            tx: Mutex::new(tx),
            user,
        }
    }
}

impl ClientContext for OverflowContext {
    forward_user_callbacks!();
}

impl ConsumerContext for OverflowContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        forward_commits(&self.tx, result, offsets);
    }
}

impl State {
    pub(crate) fn overflow_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.cfg.overflow_suffix)
    }

    pub(crate) fn is_overflow(&self, topic: &str) -> bool {
        self.overflow.is_some() && topic.ends_with(&self.cfg.overflow_suffix)
    }

    /// Polls the overflow consumer (which has no rebalance callbacks, so the lock may be held).
    pub(crate) fn poll_overflow(&mut self) -> usize {
        // Lent out while its messages (which borrow it) are handed to the engine.
        let Some(c) = self.overflow.take() else {
            return 0;
        };
        let mut n = 0;
        while n < 256 {
            match c.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    warn!(error = %e, "overflow consumer error");
                    break;
                }
                Some(Ok(m)) => {
                    self.on_overflow_message(&m);
                    n += 1;
                }
            }
        }
        self.overflow = Some(c);
        n
    }

    fn on_overflow_message(&mut self, m: &BorrowedMessage<'_>) {
        let topic = self.intern(m.topic());
        let tp = TopicPartition {
            topic,
            partition: m.partition(),
        };
        let Some(h) = self.engine.handle(&tp) else {
            return;
        };
        let mut data = RecordData::from_message(m, tp.topic.clone());
        let text = |name: &str| {
            data.header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        // The handler sees the original record: its topic, partition, offset and key.
        let source_topic = text(headers::SOURCE_TOPIC);
        let source_partition = text(headers::SOURCE_PARTITION).and_then(|p| p.parse().ok());
        let source_offset = text(headers::SOURCE_OFFSET).and_then(|o| o.parse().ok());
        let source_key = data.header(headers::SOURCE_KEY).cloned();
        if let (Some(t), Some(p), Some(o)) = (source_topic, source_partition, source_offset) {
            data.topic = self.intern(&t);
            data.partition = p;
            data.offset = o;
        }
        data.key = source_key;
        let route = m.key().map(Bytes::copy_from_slice);
        let record = Record::from(data).with_route(route.clone());
        let weight = record.weight();
        self.engine
            .fetched_overflow(h, m.offset(), route, weight, record);
    }

    pub(super) fn assign_overflow(
        &mut self,
        topic: &str,
        partition: i32,
        main: PartitionHandle,
        out: &mut TopicPartitionList,
    ) {
        let name = self.overflow_topic(topic);
        let otopic = self.intern(&name);
        let c = self.overflow.as_ref().expect("checked");
        let mut q = TopicPartitionList::new();
        q.add_partition(&name, partition);
        let (start, metadata) = match c.committed_offsets(q, Duration::from_secs(10)) {
            Ok(r) => r
                .elements()
                .first()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => (o, e.metadata().to_owned()),
                    _ => (0, String::new()),
                })
                .unwrap_or((0, String::new())),
            Err(e) => {
                warn!(topic = %name, partition, error = %e, "could not read overflow offsets; starting from its beginning");
                (0, String::new())
            }
        };
        let tp = TopicPartition {
            topic: otopic,
            partition,
        };
        let (_, warning) = self
            .engine
            .assign(tp, start, Some(&metadata), Role::Overflow { main });
        if let Some(w) = warning {
            warn!(topic = %name, partition, error = %w, "ignoring overflow commit metadata");
        }
        let _ = out.add_partition_offset(&name, partition, Offset::Offset(start));
    }
}
