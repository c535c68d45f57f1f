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
/// through the engine's queues and dropped twice. With the fetched parts shared, each of those
/// touches one reference count and a few words rather than a count per part and every field:
/// per-record copies are most of what a consumer costs over a bare poll loop.
#[derive(Debug, Clone)]
pub struct Record {
    data: Arc<RecordData>,
    /// The key a [`KeyRouter`](crate::KeyRouter) gave this delivery; `None` while it runs under the
    /// record's own key, which is not cloned for it (see [`Record::route`]).
    routed: Option<Option<Bytes>>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How many records this delivery stands for: 1, or more once coalesced.
    pub coalesced: usize,
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
            routed: None,
            data: Arc::new(data),
            attempt: 1,
            coalesced: 1,
        }
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
            && self.route() == other.route()
            && (self.attempt, self.coalesced) == (other.attempt, other.coalesced)
    }
}

impl Eq for Record {}

impl Record {
    /// The ordering key this delivery runs under: the record's key, or one of the keys a
    /// [`KeyRouter`](crate::KeyRouter) gave it (a record may run once per key).
    pub fn route(&self) -> Option<&Bytes> {
        match &self.routed {
            Some(route) => route.as_ref(),
            None => self.data.key.as_ref(),
        }
    }

    /// This delivery under another ordering key (`None`: under no key).
    pub fn with_route(mut self, route: Option<Bytes>) -> Self {
        self.routed = Some(route);
        self
    }
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
    fn fetched(
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use rdkafka::Timestamp;

    use super::{Record, RecordData};

    fn record(key: Option<&'static [u8]>, payload: Option<&'static [u8]>) -> Record {
        Record::from(RecordData::fetched(
            Arc::from("t"),
            Arc::from(Vec::new()),
            (0, 7),
            (key, payload),
            std::iter::empty(),
            Timestamp::NotAvailable,
        ))
    }

    #[test]
    fn changing_a_record_leaves_its_clones_as_they_were() {
        let original = record(Some(b"k"), Some(b"before"));
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
        type Case<'a> = (Option<&'static [u8]>, Option<&'static [u8]>);
        let cases: [Case<'_>; 6] = [
            (Some(b"key"), Some(b"payload")),
            (Some(b"key"), None),
            (Some(b"key"), Some(b"")),
            (None, Some(b"payload")),
            (Some(b""), Some(b"payload")),
            (None, None),
        ];
        for (k, p) in cases {
            let r = record(k, p);
            assert_eq!(r.key.as_deref(), k);
            assert_eq!(r.payload.as_deref(), p);
        }
    }

    #[test]
    fn a_delivery_runs_under_its_key_unless_routed_elsewhere() {
        let r = record(Some(b"k"), Some(b"p"));
        assert_eq!(r.route().map(|k| &k[..]), Some(&b"k"[..]));
        let other = r.clone().with_route(Some(Bytes::from_static(b"row")));
        assert_eq!(other.route().map(|k| &k[..]), Some(&b"row"[..]));
        assert_eq!(other.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.clone().with_route(None).route(), None);
        assert_eq!(record(None, Some(b"p")).route(), None);
        // Equal when they run under the same key, however that key was given.
        assert_eq!(r.clone().with_route(r.key.clone()), r);
        assert_ne!(other, r);
    }
}
