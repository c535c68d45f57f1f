//! Owned records: what handlers receive. Borrowed rdkafka messages never leave the driver.

use std::sync::Arc;

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedHeaders};
use rdkafka::Timestamp;

/// One message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Option<Bytes>,
}

/// A Kafka record as a handler receives it: owned, and cheap to clone and to move.
///
/// What was fetched ([`RecordData`]: topic, partition, offset, key, payload, headers, timestamp)
/// sits behind one reference count, and `record.key`, `record.payload` and the rest read straight
/// through it. Why: the engine keeps each item until its handler has finished (to retry it or to
/// dead-letter it) while the handler gets a copy of its own, so every record is cloned, moved
/// through the engine's queues and dropped twice. With the fetched parts shared, that is one
/// counter and a few words rather than five counters and 170 bytes, which is most of what the
/// consumer costs per record over a bare poll loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    data: Arc<RecordData>,
    /// The ordering key this delivery runs under: the record's key, or one of the keys a
    /// [`Router`](crate::Router) gave it (a record may run once per key).
    pub route: Option<Bytes>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How many records this delivery stands for (more than one once coalesced).
    pub records: usize,
}

/// What was fetched from Kafka for one record; a [`Record`] reads through to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordData {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Bytes>,
    pub payload: Option<Bytes>,
    pub headers: Arc<[Header]>,
    /// Milliseconds since the epoch, as the producer or broker stamped it.
    pub timestamp: Option<i64>,
}

impl std::ops::Deref for Record {
    type Target = RecordData;

    fn deref(&self) -> &RecordData {
        &self.data
    }
}

/// Changing a record (a coalescing merge rewrites the payload) copies what was fetched first if
/// another clone still shares it, so no other holder sees the change.
impl std::ops::DerefMut for Record {
    fn deref_mut(&mut self) -> &mut RecordData {
        Arc::make_mut(&mut self.data)
    }
}

impl From<RecordData> for Record {
    /// A first delivery of `data`, under its own key.
    fn from(data: RecordData) -> Self {
        Record {
            route: data.key.clone(),
            data: Arc::new(data),
            attempt: 1,
            records: 1,
        }
    }
}

thread_local! {
    /// Most records carry no headers: they share one empty list rather than allocate.
    static NO_HEADERS: Arc<[Header]> = Arc::from(Vec::new());
}

/// Header names the runtime writes on dead-letter and overflow records.
pub mod headers {
    pub const SOURCE_TOPIC: &str = "kafkaesque.source.topic";
    pub const SOURCE_PARTITION: &str = "kafkaesque.source.partition";
    pub const SOURCE_OFFSET: &str = "kafkaesque.source.offset";
    pub const SOURCE_KEY: &str = "kafkaesque.source.key";
    pub const SOURCE_TIMESTAMP: &str = "kafkaesque.source.timestamp";
    pub const ERROR: &str = "kafkaesque.error";
    pub const REASON: &str = "kafkaesque.reason";
    pub const ATTEMPTS: &str = "kafkaesque.attempts";
}

/// Copies a message's key and payload out of librdkafka's buffer into one allocation that both
/// share: the key is cloned at least once (it is also the record's `route`), and a clone of a
/// freshly copied `Bytes` allocates again, so one buffer sliced twice costs two allocations
/// where separate copies would cost three. Most records have a key; those without get a plain
/// copy.
fn key_and_payload(key: Option<&[u8]>, payload: Option<&[u8]>) -> (Option<Bytes>, Option<Bytes>) {
    let Some(k) = key else {
        return (None, payload.map(Bytes::copy_from_slice));
    };
    let p = payload.unwrap_or_default();
    let mut buf = Vec::with_capacity(k.len() + p.len());
    buf.extend_from_slice(k);
    buf.extend_from_slice(p);
    let buf = Bytes::from(buf);
    let key = buf.slice(..k.len());
    (Some(key), payload.map(|_| buf.slice(k.len()..)))
}

impl RecordData {
    /// A record from a queue `rdkafka` polls (the main queue, the overflow consumer's).
    pub(crate) fn from_message(m: &BorrowedMessage<'_>, topic: Arc<str>) -> Self {
        let headers = m.headers().into_iter().flat_map(|hs| hs.iter());
        Self::fetched(
            topic,
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
    pub(crate) fn from_queued(m: &kafkaesque_rdqueue::Message<'_>, topic: Arc<str>) -> Self {
        Self::fetched(
            topic,
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
    /// with every other record that has none.
    fn fetched(
        topic: Arc<str>,
        (partition, offset): (i32, i64),
        (key, payload): (Option<&[u8]>, Option<&[u8]>),
        headers: impl Iterator<Item = Header>,
        timestamp: Timestamp,
    ) -> Self {
        let mut headers = headers.peekable();
        let headers = if headers.peek().is_none() {
            NO_HEADERS.with(Arc::clone)
        } else {
            headers.collect()
        };
        let (key, payload) = key_and_payload(key, payload);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::{key_and_payload, Record, RecordData};

    #[test]
    fn changing_a_record_leaves_its_clones_as_they_were() {
        let original = Record::from(RecordData {
            topic: Arc::from("t"),
            partition: 0,
            offset: 7,
            key: Some(Bytes::from_static(b"k")),
            payload: Some(Bytes::from_static(b"before")),
            headers: Arc::from(Vec::new()),
            timestamp: None,
        });
        assert_eq!(original.route.as_deref(), Some(&b"k"[..]));
        let mut changed = original.clone();
        changed.payload = Some(Bytes::from_static(b"after"));
        changed.offset = 8;
        assert_eq!(original.payload.as_deref(), Some(&b"before"[..]));
        assert_eq!(original.offset, 7);
        assert_eq!(changed.payload.as_deref(), Some(&b"after"[..]));
        assert_eq!(changed.offset, 8);
    }

    #[test]
    fn key_and_payload_come_back_as_they_were() {
        type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
        let cases: [Case<'_>; 5] = [
            (Some(b"key"), Some(b"payload")),
            (Some(b"key"), None),
            (Some(b"key"), Some(b"")),
            (None, Some(b"payload")),
            (Some(b""), Some(b"payload")),
        ];
        for (k, p) in cases {
            let (key, payload) = key_and_payload(k, p);
            assert_eq!(key.as_deref(), k);
            assert_eq!(payload.as_deref(), p);
        }
        assert_eq!(key_and_payload(None, None), (None, None));
    }
}
