//! The optional serde helper (cargo feature `serde`): a record's payload as a typed value.

use serde::de::DeserializeOwned;

use super::Record;

/// Why [`Record::json`] gave no value. Both name the record (`topic/partition@offset`), so the
/// log line or dead-letter header says which one to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The record has a null value (a tombstone).
    #[error("record {topic}/{partition}@{offset} has no payload")]
    NoPayload {
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
    },
    /// The payload is not JSON, or not the shape asked for; `source` says where.
    #[error("record {topic}/{partition}@{offset}: payload is not the JSON expected: {source}")]
    Invalid {
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// serde's account, with the line and column.
        #[source]
        source: serde_json::Error,
    },
}

impl Record {
    /// The payload deserialised from JSON as a `T`.
    ///
    /// A payload that cannot be a `T` never will be on a later attempt, so the error converts
    /// into a fatal [`HandlerError`](crate::HandlerError) (reason `malformed`): `record.json::<T>()?` in a handler
    /// dead-letters a poison record at once instead of retrying it.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, JsonError> {
        let Some(payload) = self.payload() else {
            return Err(JsonError::NoPayload {
                topic: self.topic().to_owned(),
                partition: self.partition(),
                offset: self.offset(),
            });
        };
        serde_json::from_slice(payload).map_err(|source| JsonError::Invalid {
            topic: self.topic().to_owned(),
            partition: self.partition(),
            offset: self.offset(),
            source,
        })
    }
}
