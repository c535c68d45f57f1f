//! Owned records: what handlers receive. Borrowed rdkafka messages never leave the driver.

use std::sync::Arc;

use bytes::Bytes;

mod data;
#[cfg(feature = "serde")]
mod json;
#[cfg(test)]
mod tests;

pub(crate) use data::BatchShared;
pub use data::RecordData;
#[cfg(feature = "serde")]
pub use json::JsonError;

/// One message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name, as the producer wrote it (not unique: Kafka allows repeats).
    pub name: String,
    /// Its value; `None` is a null value, which Kafka tells apart from an empty one.
    pub value: Option<Bytes>,
}

/// A Kafka record as a handler receives it: owned, read-only, and cheap to clone and to move.
///
/// It reads like rdkafka's `Message` trait: [`topic`](Record::topic),
/// [`partition`](Record::partition), [`offset`](Record::offset), [`key`](Record::key),
/// [`payload`](Record::payload), [`headers`](Record::headers), [`timestamp`](Record::timestamp),
/// plus what the consumer adds: the [`attempt`](Record::attempt) this delivery is and how many
/// records it stands for once [`coalesced`](Record::coalesced). Why methods and not fields: a
/// handler must not be able to make a record claim another position (`record.offset = 8`);
/// the only rewrites are the ones a [`Merge`](crate::Merge) needs ([`Record::absorb`],
/// [`Record::set_payload`], [`Record::push_header`]).
///
/// What was fetched ([`RecordData`]) sits behind one reference count. Why: the engine keeps each
/// item until its handler has finished (to retry it or to dead-letter it) while the handler gets
/// a copy of its own, so every record is cloned, moved through the engine's queues and dropped
/// twice. With the fetched parts shared, each of those touches one reference count and a few
/// words rather than a count per part and every field: per-record copies are most of what a
/// consumer costs over a bare poll loop. A rewrite copies the fetched parts first if another
/// clone still shares them, so no other holder sees it.
#[derive(Debug, Clone)]
pub struct Record {
    data: Arc<RecordData>,
    /// The key a [`KeyRouter`](crate::KeyRouter) gave this delivery; `None` while it runs under the
    /// record's own key, which is not cloned for it (see [`Record::route`]).
    routed: Option<Option<Bytes>>,
    /// 1 for the first attempt.
    attempt: u32,
    /// How many records this delivery stands for: 1, or more once coalesced.
    coalesced: usize,
}

impl From<RecordData> for Record {
    /// A first delivery of `data`, under its own key: how a test or a tool outside a consumer
    /// makes a record.
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
    /// The topic the record was fetched from (for a record back from the overflow topic, the
    /// topic it was first fetched from).
    pub fn topic(&self) -> &str {
        &self.data.topic
    }

    /// The partition of [`topic`](Record::topic) it sits in.
    pub fn partition(&self) -> i32 {
        self.data.partition
    }

    /// Its offset in that partition; for a coalesced delivery, the newest record's offset.
    pub fn offset(&self) -> i64 {
        self.data.offset
    }

    /// The record's key as it was produced (not the ordering key a router gave it: see
    /// [`route`](Record::route)).
    pub fn key(&self) -> Option<&[u8]> {
        self.data.key.as_deref()
    }

    /// The key as shared bytes, for keeping it past the handler without a copy.
    pub fn key_bytes(&self) -> Option<&Bytes> {
        self.data.key.as_ref()
    }

    /// The record's value; `None` for a null value (a tombstone), which is not an empty one.
    pub fn payload(&self) -> Option<&[u8]> {
        self.data.payload.as_deref()
    }

    /// The value as shared bytes, for keeping it past the handler without a copy.
    pub fn payload_bytes(&self) -> Option<&Bytes> {
        self.data.payload.as_ref()
    }

    /// All headers, in the order they were produced.
    pub fn headers(&self) -> &[Header] {
        &self.data.headers
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.data.header(name)
    }

    /// Milliseconds since the epoch, as the producer or broker stamped it; `None` when neither
    /// did.
    pub fn timestamp(&self) -> Option<i64> {
        self.data.timestamp
    }

    /// Which attempt this delivery is: 1 for the first, more after a handler failed and the
    /// [`RetryPolicy`](crate::RetryPolicy) tried again.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How many records this delivery stands for: 1, or more once a
    /// [`Merge`](crate::Merge) folded queued records of its key into it.
    pub fn coalesced(&self) -> usize {
        self.coalesced
    }

    /// What was fetched, as one value.
    pub fn data(&self) -> &RecordData {
        &self.data
    }

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

    /// For a [`Merge`](crate::Merge): makes this record stand for itself and `newer` as well.
    /// It takes `newer`'s offset and timestamp (a handler that stores the last offset it applied
    /// must see the newest) and adds `newer`'s count to [`coalesced`](Record::coalesced). Its
    /// payload and headers stay as they are: the merge decides those with
    /// [`set_payload`](Record::set_payload) and [`push_header`](Record::push_header).
    pub fn absorb(&mut self, newer: &Record) {
        let data = self.data_mut();
        data.offset = newer.data.offset;
        data.timestamp = newer.data.timestamp;
        self.coalesced += newer.coalesced;
    }

    /// For a [`Merge`](crate::Merge): replaces the payload with the merged one.
    pub fn set_payload(&mut self, payload: Option<Bytes>) {
        self.data_mut().payload = payload;
    }

    /// For a [`Merge`](crate::Merge): adds a header (a mark that the payload is now a batch).
    pub fn push_header(&mut self, header: Header) {
        let data = self.data_mut();
        let mut headers = data.headers.to_vec();
        headers.push(header);
        data.headers = headers.into();
    }

    /// Bytes this record weighs in the engine's memory caps: what a [`Merge`](crate::Merge)
    /// returns for the merged record, counted as the consumer counts fetched ones.
    pub fn weight(&self) -> usize {
        self.data.weight()
    }

    /// Stamps a delivery with what the engine counted for it (see `state`).
    pub(crate) fn set_delivery(&mut self, attempt: u32, coalesced: usize) {
        self.attempt = attempt;
        self.coalesced = coalesced;
    }

    /// The fetched parts, copied first if another clone shares them.
    fn data_mut(&mut self) -> &mut RecordData {
        Arc::make_mut(&mut self.data)
    }
}

/// Header names the runtime writes on dead-letter and overflow records.
pub mod headers {
    /// The topic the record was first fetched from.
    pub const SOURCE_TOPIC: &str = "kafkaesque.source.topic";
    /// Its partition there.
    pub const SOURCE_PARTITION: &str = "kafkaesque.source.partition";
    /// Its offset there (for a coalesced record, the newest one's).
    pub const SOURCE_OFFSET: &str = "kafkaesque.source.offset";
    /// Its key there: an overflow record is keyed by its ordering key instead.
    pub const SOURCE_KEY: &str = "kafkaesque.source.key";
    /// Its timestamp there, in milliseconds since the epoch.
    pub const SOURCE_TIMESTAMP: &str = "kafkaesque.source.timestamp";
    /// The handler's last error message (dead letters only).
    pub const ERROR: &str = "kafkaesque.error";
    /// A short code for why the record was dead-lettered (`max_attempts`, `fatal`, ...).
    pub const REASON: &str = "kafkaesque.reason";
    /// How many attempts the record had.
    pub const ATTEMPTS: &str = "kafkaesque.attempts";
}
