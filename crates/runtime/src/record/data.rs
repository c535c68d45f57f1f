//! What was fetched for one record, and how it is copied out of rdkafka's borrowed messages.

use std::sync::Arc;

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedHeaders};
use rdkafka::Timestamp;

use super::Header;

/// What was fetched from Kafka for one record; a [`Record`](super::Record) reads through to it.
///
/// Its fields are open so that a test or a tool can build a record (`Record::from(data)`); a
/// consumer's records expose them only through [`Record`](super::Record)'s methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordData {
    /// The topic's name, shared by the records of one fetched batch.
    pub topic: Arc<str>,
    /// The partition within the topic.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
    /// The key as produced; `None` for a null key.
    pub key: Option<Bytes>,
    /// The value as produced; `None` for a null value.
    pub payload: Option<Bytes>,
    /// The headers as produced; records without any share one empty list.
    pub headers: Arc<[Header]>,
    /// Milliseconds since the epoch, as the producer or broker stamped it.
    pub timestamp: Option<i64>,
}

thread_local! {
    /// Most records carry no headers: they share one empty list rather than allocate.
    static NO_HEADERS: Arc<[Header]> = Arc::from(Vec::new());
}

/// What the records of one fetched batch share: their topic's name and the empty header list.
///
/// Why per batch and not one value for the process: every clone and drop of a record's topic
/// or headers writes their reference count, and a count that the fetcher thread raises while
/// the driver lowers it moves between the two cores on every record. A batch's own copies are
/// raised by the fetcher alone, then lowered by the driver alone: the count's cache line
/// crosses over about once per batch instead.
pub(crate) struct BatchShared {
    topic: Arc<str>,
    no_headers: Arc<[Header]>,
}

impl BatchShared {
    pub(crate) fn new(topic: &str) -> Self {
        BatchShared {
            topic: Arc::from(topic),
            no_headers: Arc::from(Vec::new()),
        }
    }
}

impl RecordData {
    /// A record from a queue `rdkafka` polls (the main queue, the overflow consumer's).
    pub(crate) fn from_message(m: &BorrowedMessage<'_>, topic: Arc<str>) -> Self {
        let headers = m.headers().into_iter().flat_map(|hs| hs.iter());
        Self::fetched(
            topic,
            NO_HEADERS.with(Arc::clone),
            (m.partition(), m.offset()),
            (m.key(), m.payload()),
            headers.map(|h| Header {
                name: h.key.to_owned(),
                value: h.value.map(Bytes::copy_from_slice),
            }),
            m.timestamp(),
        )
    }

    /// A record from a partition's own queue (see `fetcher.rs`).
    pub(crate) fn from_queued(m: &kafkaesque_rdqueue::Message<'_>, shared: &BatchShared) -> Self {
        Self::fetched(
            shared.topic.clone(),
            shared.no_headers.clone(),
            (m.partition(), m.offset()),
            (m.key(), m.payload()),
            m.headers().map(|h| Header {
                name: String::from_utf8_lossy(h.name).into_owned(),
                value: h.value.map(Bytes::copy_from_slice),
            }),
            m.timestamp(),
        )
    }

    /// What both kinds of message become: the key and payload copied out, the headers shared
    /// with other records that have none (`no_headers`).
    pub(super) fn fetched(
        topic: Arc<str>,
        no_headers: Arc<[Header]>,
        (partition, offset): (i32, i64),
        (key, payload): (Option<&[u8]>, Option<&[u8]>),
        headers: impl Iterator<Item = Header>,
        timestamp: Timestamp,
    ) -> Self {
        let mut headers = headers.peekable();
        let headers = if headers.peek().is_none() {
            no_headers
        } else {
            headers.collect()
        };
        // Copied each into a buffer of its own: a `Bytes` made from a fresh buffer costs no
        // reference count until it is cloned, and nothing on the consumer's path clones them
        // (the route is the key itself, not a clone of it).
        let (key, payload) = (
            key.map(Bytes::copy_from_slice),
            payload.map(Bytes::copy_from_slice),
        );
        RecordData {
            topic,
            partition,
            offset,
            key,
            payload,
            headers,
            timestamp: timestamp.to_millis(),
        }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_ref())
    }

    /// Bytes this record weighs in the engine's memory caps.
    pub(crate) fn weight(&self) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.as_ref().map_or(0, |v| v.len()))
            .sum();
        self.key.as_ref().map_or(0, |k| k.len())
            + self.payload.as_ref().map_or(0, |p| p.len())
            + h
            + 64
    }

    /// Headers to carry onto a dead-letter or overflow record: the originals plus `extra`.
    pub(crate) fn owned_headers(&self, extra: &[(&str, String)]) -> OwnedHeaders {
        let mut out = OwnedHeaders::new_with_capacity(self.headers.len() + extra.len());
        for h in self.headers.iter() {
            out = out.insert(rdkafka::message::Header {
                key: &h.name,
                value: h.value.as_deref(),
            });
        }
        for (k, v) in extra {
            out = out.insert(rdkafka::message::Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        out
    }
}
