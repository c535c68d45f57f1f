//! What a delivery asks of the applier, read from its record — or why it cannot be applied by
//! this build at all.
//!
//! **A message of a newer format is held, never refused.** An API upgraded before its consumers
//! writes messages this consumer cannot read whole ([`Newer`]). Applying what it can read of one
//! could lose the rest, and dead-lettering it as malformed would take a valid message out of its
//! row's order. So the delivery fails as transient: the engine retries it with back-off, without
//! using up attempts, while the other rows keep applying; the later records of its row wait
//! behind it, and the partition's committed offset stays below it, so the upgraded consumer that
//! takes over the partition reads it again. A delivery that coalesced changes with it is held
//! whole: those changes wait too, and the upgraded consumer applies them (replay-safe).

use kafkaesque_runtime::{HandlerError, Record};
use uuid::Uuid;

use crate::merge::{entry_of, is_batch};
use crate::message::{parse_row_key, Batch, Change, Entry, Newer, FORMAT_VERSION};

/// The app and row a delivery runs under (its route, a [`crate::message::row_key`]) and the
/// changes it carries. A delivery carrying a message of a newer format is held (a transient
/// error); a record that is not ours to understand, or whose changes are not all of the route's
/// app, is dead-lettered as `malformed`.
pub(super) fn decode(record: &Record) -> Result<(Uuid, Uuid, Vec<Change>), HandlerError> {
    let malformed = |why: &str| HandlerError::rejected("malformed", why);
    let entries = if is_batch(record) {
        Batch::parse(record.payload().unwrap_or_default())
            .map_err(|e| malformed(&format!("batch: {e}")))?
    } else {
        vec![entry_of(record).ok_or_else(|| malformed("payload is not a message"))?]
    };
    let mut changes = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry {
            Entry::Change(change) => changes.push(change),
            Entry::Newer { offset, newer } => return Err(hold(record, offset, &newer)),
        }
    }
    let (app, row) = record
        .route()
        .and_then(|r| parse_row_key(r))
        .ok_or_else(|| malformed("not a subscription update"))?;
    let key = record.key().and_then(|k| std::str::from_utf8(k).ok());
    if changes.is_empty()
        || changes.iter().any(|c| c.message.app_id() != app)
        || key != Some(&app.to_string())
    {
        return Err(malformed("the record's key is not its app id"));
    }
    Ok((app, row, changes))
}

/// Holds a delivery carrying a message of a newer format, first read at `offset`: says so in
/// the logs and metrics, and fails it as transient.
fn hold(record: &Record, offset: i64, newer: &Newer) -> HandlerError {
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    let app_id = text(record.key());
    let key = text(record.route().map(|r| &r[..]));
    metrics::counter!(
        "subscribers_newer_format_held_total",
        "version" => newer.version.to_string()
    )
    .increment(1);
    tracing::warn!(
        %app_id, %key, partition = record.partition(), offset, version = newer.version,
        op = %newer.op, understood = FORMAT_VERSION,
        "message of a newer format than this consumer's: its key is held until a consumer that \
         understands it reads it"
    );
    HandlerError::transient(format!(
        "version {} op {:?} at offset {offset} is newer than this consumer's format \
         (version {FORMAT_VERSION}): held",
        newer.version, newer.op
    ))
}
