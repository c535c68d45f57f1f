//! Coalescing: how the engine folds queued deliveries of one row into one when the row is hot
//! (`HotKeyPolicy::Coalesce`), so that a row receiving thousands of updates a second costs one
//! database write per processing slot.
//!
//! The merged delivery is a [`Batch`] of changes. Two neighbouring changes fold into one where
//! that is exact: updates of the row itself (fields last-writer-wins, tags merged, deletions kept
//! as deletions), and mirrored updates of one child whose newer half does not change its link.
//! Mirrored updates of *different* children never fold here: whether each child is linked is
//! known only to the handler, which folds the whole batch into one write once it knows (see
//! [`crate::apply`]).
//!
//! A message of a newer format ([`crate::message::Newer`]) folds into nothing and nothing folds
//! into it: the batch keeps it as a line of its own at its offset, so that the handler holds the
//! delivery and no change after it is applied before it.

use bytes::Bytes;
use kafkaesque_runtime::{Header, Record};
use uuid::Uuid;

use crate::message::{decode, parse_row_key, Batch, Change, Decoded, Entry, Message, BATCH_HEADER};

/// The merge the consumer gives the engine: `key` is the row (the delivery's route).
pub fn merge(key: &[u8], older: &mut Record, newer: Record) -> usize {
    let row = parse_row_key(key).map(|(_, row)| row);
    let mut batch = into_batch(older);
    match (row, entry_of(&newer)) {
        (_, Some(Entry::Newer { offset, newer })) => batch.push_newer(offset, &newer),
        (Some(row), Some(Entry::Change(change))) => match batch.pop() {
            Some(mut last) => {
                let unfolded = fold(row, &mut last, change);
                batch.push(&last);
                if let Some(change) = unfolded {
                    batch.push(&change);
                }
            }
            None => batch.push(&change),
        },
        // Not ours to understand (a malformed record's lane): keep every record for the
        // dead-letter topic, one per line.
        _ => push_raw(&mut batch, &newer),
    }
    older.set_payload(Some(batch.into_bytes()));
    older.absorb(&newer);
    older.weight()
}

/// What a single (not yet merged) record carries; `None` when it is not a message.
pub fn entry_of(record: &Record) -> Option<Entry> {
    Some(entry(record.offset(), decode(record.payload()?).ok()?))
}

fn entry(offset: i64, decoded: Decoded) -> Entry {
    match decoded {
        Decoded::Known(message) => Entry::Change(Change { offset, message }),
        Decoded::Newer(newer) => Entry::Newer { offset, newer },
    }
}

pub fn is_batch(record: &Record) -> bool {
    record.header(BATCH_HEADER).is_some()
}

/// `older` as a batch, marking it as one the first time.
fn into_batch(older: &mut Record) -> Batch {
    let payload = older.payload_bytes().cloned().unwrap_or_default();
    if is_batch(older) {
        return Batch::from_bytes(payload);
    }
    older.push_header(Header {
        name: BATCH_HEADER.into(),
        value: Some(Bytes::from_static(b"1")),
    });
    let mut batch = Batch::default();
    match decode(&payload).map(|d| entry(older.offset(), d)) {
        Ok(Entry::Change(change)) => batch.push(&change),
        Ok(Entry::Newer { offset, newer }) => batch.push_newer(offset, &newer),
        Err(_) => push_raw_bytes(&mut batch, &payload),
    }
    batch
}

fn push_raw(batch: &mut Batch, record: &Record) {
    push_raw_bytes(batch, record.payload().unwrap_or_default());
}

/// A payload that is not a message, kept as it came (as text, on one line) for the dead letters.
fn push_raw_bytes(batch: &mut Batch, payload: &[u8]) {
    let line = String::from_utf8_lossy(payload).replace('\n', " ");
    batch.push_line(line.as_bytes());
}

/// Folds `newer` into `last` when applying the two in turn to `row` equals applying the fold.
/// Gives `newer` back when it does not.
pub fn fold(row: Uuid, last: &mut Change, newer: Change) -> Option<Change> {
    let (Message::Update(a), Message::Update(b)) = (&mut last.message, &newer.message) else {
        return Some(newer);
    };
    let own = a.player_id == row;
    let same = a.player_id == b.player_id && a.app_id == b.app_id;
    // On a parent's queue `email` is a link (or unlink) request: a newer one may fold only when
    // it repeats the older's, because a repeated request finds the link as the older left it.
    let keeps_link =
        own || !b.asks_link() || (b.email == a.email && b.parent_player_id == a.parent_player_id);
    if !same || !keeps_link {
        return Some(newer);
    }
    let Message::Update(b) = newer.message else {
        unreachable!("matched above")
    };
    let asks_link = b.asks_link();
    a.fields.overwrite_with(b.fields);
    a.tags.extend(b.tags);
    if asks_link {
        a.email = b.email;
        a.parent_player_id = b.parent_player_id;
    }
    last.offset = newer.offset;
    None
}

#[cfg(test)]
mod delete_tests;
#[cfg(test)]
mod tests;
