//! What the API writes to Kafka and the consumer reads back: one JSON [`Message`] per record,
//! keyed by the app id.
//!
//! **Why the topic is keyed by app.** A subscription and the email subscription it is linked to
//! always belong to one app, so keying by app puts both rows' updates in one partition, in one
//! order, and the engine can run them under per-row keys without ever letting two writes to one
//! row overlap. The cost: an app's whole traffic lands on one partition, so a big app makes a hot
//! partition. That is what subpartition concurrency is for — inside the partition every row has
//! its own queue — and why the partition count may stay small and fixed (changing it would move
//! apps between partitions and break the replay rule in [`crate::apply`]).
//!
//! A delivery the engine has coalesced carries several messages: its payload is then a
//! [`Batch`] — one [`Change`] (a message and its source offset) per line.
//!
//! **Format versions.** Every message carries `version`, the format it was written in: the API
//! writes [`FORMAT_VERSION`]; a message without one (written before versions existed) is
//! version 1. A new field that a consumer must understand, or a new `op`, bumps the version.
//! A consumer reads a message through [`decode`], which tells a message it understands from one
//! written by a newer API ([`Newer`]: a version above its own, or an `op` it does not know) —
//! so that it can hold that message until it is upgraded, rather than apply half of it or
//! dead-letter it as malformed. Hence the upgrade order: consumers first, then the API.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod device;
pub use device::Device;

/// Device type of email subscriptions, the parents that `email` links to.
pub const EMAIL_DEVICE_TYPE: i32 = 11;

/// Header that marks a payload as a [`Batch`] rather than one [`Message`].
pub const BATCH_HEADER: &str = "subscribers.batch";

/// The format this build writes and the newest it understands. Version 2 added `version` itself
/// and the `delete` op.
pub const FORMAT_VERSION: u32 = 2;

/// The version of a message that carries none: everything written before versions existed.
pub const FIRST_VERSION: u32 = 1;

/// The `op`s this build understands.
const KNOWN_OPS: [&str; 3] = ["create", "update", "delete"];

/// One record of the topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Message {
    /// `POST /api/v1/players`: the row does not exist until this is applied.
    Create(NewPlayer),
    /// `PUT /api/v1/players/{id}`.
    Update(Update),
    /// `DELETE /api/v1/players/{id}`.
    Delete(Delete),
}

impl Message {
    pub fn player_id(&self) -> Uuid {
        match self {
            Message::Create(c) => c.player_id,
            Message::Update(u) => u.player_id,
            Message::Delete(d) => d.player_id,
        }
    }

    pub fn app_id(&self) -> Uuid {
        match self {
            Message::Create(c) => c.app_id,
            Message::Update(u) => u.app_id,
            Message::Delete(d) => d.app_id,
        }
    }

    /// The record's payload, marked with [`FORMAT_VERSION`].
    pub fn to_bytes(&self) -> Bytes {
        let versioned = Versioned {
            version: FORMAT_VERSION,
            message: self,
        };
        serde_json::to_vec(&versioned)
            .expect("a message always serializes")
            .into()
    }
}

/// A message as the API writes it: its fields and the format version.
#[derive(Serialize)]
struct Versioned<'a> {
    version: u32,
    #[serde(flatten)]
    message: &'a Message,
}

/// What every version of the format keeps: the version and the `op`, read before the rest so
/// that a message of a newer format is recognised as one even when the rest would not parse.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default = "first_version")]
    version: u32,
    #[serde(borrow)]
    op: Cow<'a, str>,
}

fn first_version() -> u32 {
    FIRST_VERSION
}

/// A payload as this build reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Known(Message),
    /// Written by a newer API: held until a consumer that understands it reads it.
    Newer(Newer),
}

/// What a consumer knows of a message written in a newer format than its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Newer {
    pub version: u32,
    pub op: String,
}

/// Whether a message of `version` with `op` was written by a newer API than this build.
pub fn is_newer(version: u32, op: &str) -> bool {
    version > FORMAT_VERSION || !KNOWN_OPS.contains(&op)
}

/// Reads a record's payload. An error is a payload that is not a message of any version (not
/// JSON, no `op`, version 0, or a known version and `op` whose fields do not parse).
pub fn decode(payload: &[u8]) -> Result<Decoded, serde_json::Error> {
    let head: Head = serde_json::from_slice(payload)?;
    if head.version < FIRST_VERSION {
        return Err(serde::de::Error::custom(format!(
            "version {} does not exist: the first is {FIRST_VERSION}",
            head.version
        )));
    }
    if is_newer(head.version, &head.op) {
        return Ok(Decoded::Newer(Newer {
            version: head.version,
            op: head.op.into_owned(),
        }));
    }
    serde_json::from_slice(payload).map(Decoded::Known)
}

/// A subscription to create, with the id the edge gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPlayer {
    pub player_id: Uuid,
    pub app_id: Uuid,
    pub device_type: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default, flatten)]
    pub fields: Fields,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Changes to one subscription; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub player_id: Uuid,
    pub app_id: Uuid,
    #[serde(default, flatten)]
    pub fields: Fields,
    /// A value sets the tag, `None` deletes it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, Option<String>>,
    /// Links the subscription to the app's email subscription for this address (lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Links the subscription to this email subscription of the app, named by its id
    /// (OneSignal's `parent_player_id`). An update carries this or `email`, never both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_player_id: Option<Uuid>,
}

impl Update {
    /// The email subscription this update asks to be linked to, by `email` or by id.
    pub fn link_target(&self) -> Option<Uuid> {
        self.parent_player_id.or_else(|| {
            self.email
                .as_deref()
                .map(|e| email_parent_id(self.app_id, e))
        })
    }

    /// Whether the update asks for a link (or, to every other parent, an unlink).
    pub fn asks_link(&self) -> bool {
        self.email.is_some() || self.parent_player_id.is_some()
    }
}

/// Removes one subscription; a tombstone remembers it, so that nothing later brings it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delete {
    pub player_id: Uuid,
    pub app_id: Uuid,
}

/// The plain fields of a subscription that an update may set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    /// Boxed: most updates set none of it, and a message stays small in the engine's queues.
    #[serde(default, flatten)]
    pub device: Box<Device>,
}

impl Fields {
    /// Last writer wins, field by field.
    pub fn overwrite_with(&mut self, newer: Fields) {
        let Fields {
            language,
            timezone,
            lat,
            long,
            country,
            external_user_id,
            device,
        } = newer;
        self.language = language.or(self.language.take());
        self.timezone = timezone.or(self.timezone);
        self.lat = lat.or(self.lat);
        self.long = long.or(self.long);
        self.country = country.or(self.country.take());
        self.external_user_id = external_user_id.or(self.external_user_id.take());
        self.device.overwrite_with(*device);
    }
}

/// One message and the offset it was read at: a line of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub offset: i64,
    pub message: Message,
}

/// A line of a [`Batch`]: a change, or a message of a newer format, held where it was read.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Change(Change),
    Newer { offset: i64, newer: Newer },
}

impl Entry {
    pub fn offset(&self) -> i64 {
        match self {
            Entry::Change(c) => c.offset,
            Entry::Newer { offset, .. } => *offset,
        }
    }
}

/// How an [`Entry`] is written: `{"offset":…,"message":{…}}` or `{"offset":…,"newer":{…}}`.
#[derive(Serialize, Deserialize)]
struct Line {
    offset: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newer: Option<Newer>,
}

/// Newline-separated [`Entry`]s, oldest first, as a coalesced delivery carries them.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    buf: BytesMut,
}

impl Batch {
    /// Takes over a batch payload; appending to it copies nothing when the payload is not shared.
    pub fn from_bytes(bytes: Bytes) -> Self {
        let buf = bytes
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        Batch { buf }
    }

    pub fn push(&mut self, change: &Change) {
        let line = serde_json::to_vec(change).expect("a change always serializes");
        self.push_line(&line);
    }

    /// Appends a message of a newer format read at `offset`: what this build knows of it.
    pub fn push_newer(&mut self, offset: i64, newer: &Newer) {
        let line = Line {
            offset,
            message: None,
            newer: Some(newer.clone()),
        };
        let line = serde_json::to_vec(&line).expect("a line always serializes");
        self.push_line(&line);
    }

    /// Appends a line as it is (it must hold no newline).
    pub fn push_line(&mut self, line: &[u8]) {
        if !self.buf.is_empty() {
            self.buf.extend_from_slice(b"\n");
        }
        self.buf.extend_from_slice(line);
    }

    /// Removes and returns the last line if it is a change.
    pub fn pop(&mut self) -> Option<Change> {
        let start = self
            .buf
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let change = serde_json::from_slice(&self.buf[start..]).ok()?;
        self.buf.truncate(start.saturating_sub(1));
        Some(change)
    }

    pub fn into_bytes(self) -> Bytes {
        self.buf.freeze()
    }

    /// Every entry, oldest first.
    pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, serde_json::Error> {
        bytes
            .split(|b| *b == b'\n')
            .map(|line| match serde_json::from_slice::<Line>(line)? {
                Line {
                    offset,
                    message: Some(message),
                    newer: None,
                } => Ok(Entry::Change(Change { offset, message })),
                Line {
                    offset,
                    message: None,
                    newer: Some(newer),
                } => Ok(Entry::Newer { offset, newer }),
                _ => Err(serde::de::Error::custom(
                    "a batch line holds either a message or a newer one",
                )),
            })
            .collect()
    }
}

/// The id of the app's email subscription for `email`: a UUIDv5 of the app and the lower-cased
/// address, so that the router can send an update carrying `email` to its parent's queue at once,
/// without asking the database.
pub fn email_parent_id(app_id: Uuid, email: &str) -> Uuid {
    Uuid::new_v5(&app_id, email.trim().to_lowercase().as_bytes())
}

/// The ordering key a delivery of `row` runs under: the row *and the app of the record*,
/// `<app>:<row>`.
///
/// **Why the app is part of it.** A row belongs to one app, but a record names its row by an id
/// any caller can write. Keyed by the record's app, another app's changes naming a row never
/// share that row's queue: they cannot be coalesced with the owner's changes (and dead-lettered
/// with them), cannot fill the owner's per-key limits, and cannot trip its hot-key policy. Two
/// deliveries of one row can then run at once only when one is another app's, which the handler
/// refuses without writing (`foreign_player`).
pub fn row_key(app_id: Uuid, row: Uuid) -> Bytes {
    let mut key = BytesMut::with_capacity(73);
    key.extend_from_slice(
        app_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    key.extend_from_slice(b":");
    key.extend_from_slice(
        row.hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    key.freeze()
}

/// The app and the row of a [`row_key`]; `None` for anything else.
pub fn parse_row_key(key: &[u8]) -> Option<(Uuid, Uuid)> {
    let (app, row) = std::str::from_utf8(key).ok()?.split_once(':')?;
    Some((Uuid::parse_str(app).ok()?, Uuid::parse_str(row).ok()?))
}

/// The record the consumer sees for `m` at `offset` (keyed by its app, as the API writes it),
/// running under `route` (a row of the message's app): for the consumer's unit tests.
#[cfg(test)]
pub(crate) fn test_record(
    m: &Message,
    offset: i64,
    route: Option<Uuid>,
) -> kafkaesque_runtime::Record {
    kafkaesque_runtime::Record::from(kafkaesque_runtime::RecordData {
        topic: std::sync::Arc::from("t"),
        partition: 0,
        offset,
        key: Some(Bytes::from(m.app_id().to_string())),
        payload: Some(m.to_bytes()),
        headers: std::sync::Arc::from(Vec::new()),
        timestamp: None,
    })
    .with_route(route.map(|r| row_key(m.app_id(), r)))
}

#[cfg(test)]
mod tests;
