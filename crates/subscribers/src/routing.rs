//! The router: which rows a record writes, decided on the consumer's driver thread, in partition
//! order, without asking the database.
//!
//! A create writes its subscription. An update or a delete writes its subscription and, mirrored,
//! the parents it is linked to — so it runs under each of those rows' keys, and no two writes ever
//! touch one row at once. A key names the record's app with the row ([`row_key`]), and the cache
//! knows links by app: a record of one app never runs under, nor routes to, another app's rows. The router knows the links from a [`LinkCache`]: loaded from PostgreSQL whenever
//! partitions are assigned, and kept current by the router itself as it routes updates that carry
//! `email` or `parent_player_id` (routing order is partition order, so a child's later records
//! see its new link).
//!
//! A message of a newer format than this build's runs under its own row's key alone (what else
//! it writes is for the upgraded consumer to know), and touches no link: it is held there (see
//! `apply/decode.rs`), and since the committed offset stays below it, the upgraded consumer routes
//! it again from scratch.
//!
//! The rule that keeps this correct: **the cache may name more parents than a child has, never
//! fewer.** An update with `email` goes to the new parent (whose id is derived from the address,
//! see [`email_parent_id`], or named by `parent_player_id`) *and* to every parent the cache knew,
//! which unlink the child; then the cache names the new parent alone. If the new parent refuses the link (the link limit) or
//! the child turns out not to exist, later updates still reach that parent, which finds no link
//! and writes nothing. A load unions what the database holds into the cache rather than
//! replacing it, so links routed but not yet written are never forgotten.
//!
//! **A stranger's ids do not grow the cache.** An update with `email` may name any id, so the
//! entry it makes is remembered with the offset that made it. When the handler finds that the
//! update's subscription does not exist in the app (`unknown_player`, `foreign_player`), it
//! [`forget`](LinkCache::forget)s the entry — only if no later update has changed it since. The
//! parent then never links the child (a link is granted only to a child that exists, and the
//! child's queue has just recorded that it does not), and the database holds no link of a
//! subscription that does not exist: the cache still names every parent the database holds. A
//! flood of updates naming random ids leaves the cache as it was, but for the entries of the
//! updates still in flight. `subscribers_link_cache_entries` counts the entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafkaesque_runtime::{AssignError, AssignHook, KeyRouter, Record, TopicPartition};
use serde::Deserialize;
use uuid::Uuid;

use crate::busiest::Busiest;
use crate::message::{decode, email_parent_id, is_newer, row_key, Decoded, FIRST_VERSION};
use crate::skip::SkipList;
use crate::store::Store;

/// The ordering key of records that are not messages: they queue together, apart from every
/// row, and are dead-lettered by the handler.
pub const MALFORMED_KEY: &[u8] = b"malformed";

/// The ordering key of messages of a newer format that do not even name their app and row as
/// this build reads them: they queue together, apart from every row, and the handler holds them
/// (see `apply/decode.rs`). A newer message that names them runs under its row's key instead.
pub const NEWER_KEY: &[u8] = b"newer";

/// (App, child) → the parents it may be linked to (one, except briefly after a crash, when the
/// database can hold an old link whose unlink had not been applied yet). Keyed by the app as
/// well: an update names its child by an id any app can write, and only the child's own app may
/// reach its parents.
#[derive(Debug, Clone, Default)]
pub struct LinkCache {
    inner: Arc<Mutex<Links>>,
}

/// (App, child) → parents.
type Links = HashMap<(Uuid, Uuid), Entry>;

/// A child's parents, as far as the router knows.
#[derive(Debug, Default)]
struct Entry {
    parents: Vec<Uuid>,
    /// The offset of the update with `email` that set `parents` last, while no link read from
    /// the database confirms them: what [`LinkCache::forget`] may undo.
    routed_at: Option<i64>,
}

impl LinkCache {
    /// Adds links read from the database, `(app, child, parent)`, to what the cache knows.
    pub fn absorb(&self, links: impl IntoIterator<Item = (Uuid, Uuid, Uuid)>) {
        let mut map = self.lock();
        let before = map.len();
        for (app, child, parent) in links {
            let entry = map.entry((app, child)).or_default();
            if !entry.parents.contains(&parent) {
                entry.parents.push(parent);
            }
            entry.routed_at = None;
        }
        entries_gauge().increment((map.len() - before) as f64);
    }

    /// Forgets what the update of `child` at one of `offsets` taught the cache, because the
    /// handler found that `child` does not exist in `app` — unless a later update has changed
    /// the entry since.
    pub fn forget(&self, app: Uuid, child: Uuid, offsets: std::ops::RangeInclusive<i64>) {
        let mut map = self.lock();
        let ours = map
            .get(&(app, child))
            .and_then(|e| e.routed_at)
            .is_some_and(|at| offsets.contains(&at));
        if ours {
            map.remove(&(app, child));
            entries_gauge().decrement(1.0);
        }
    }

    /// Forgets that `children` (of `app`) were linked to `parent`, which the handler has just
    /// deleted with its links. Whatever else names the parent is a link request routed since,
    /// which the deleted parent refuses: harmless, as every extra parent is.
    pub fn unlink_parent(&self, app: Uuid, parent: Uuid, children: &[Uuid]) {
        let mut map = self.lock();
        for child in children {
            let Some(entry) = map.get_mut(&(app, *child)) else {
                continue;
            };
            entry.parents.retain(|p| *p != parent);
            if entry.parents.is_empty() {
                map.remove(&(app, *child));
                entries_gauge().decrement(1.0);
            }
        }
    }

    /// Children the cache knows parents of.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Links> {
        self.inner.lock().expect("link cache lock")
    }

    /// The hook that reloads the cache when partitions are assigned. It runs on the driver
    /// thread (a plain thread, not a tokio worker), so it may block on the query.
    pub fn loader(&self, store: Store, rt: tokio::runtime::Handle) -> AssignHook {
        let cache = self.clone();
        Arc::new(move |assigned: &[TopicPartition]| {
            if assigned.is_empty() {
                return Ok(());
            }
            // Without the links, updates of linked children would miss their parents: the
            // consumer holds the partitions and calls again later rather than route without
            // them. One bounded attempt per call, so that the consumer stays free to shut down.
            match rt.block_on(tokio::time::timeout(LOAD_TIMEOUT, store.links())) {
                Ok(Ok(links)) => {
                    let n = links.len();
                    cache.absorb(links);
                    tracing::info!(links = n, "link cache loaded");
                    Ok(())
                }
                Ok(Err(error)) => Err(AssignError::caused_by(
                    "cannot load the links the router needs",
                    error,
                )),
                Err(_) => Err(AssignError::new(format!(
                    "cannot load the links the router needs: no answer within {LOAD_TIMEOUT:?}"
                ))),
            }
        })
    }
}

fn entries_gauge() -> metrics::Gauge {
    metrics::gauge!("subscribers_link_cache_entries")
}

/// How long one attempt to load the links may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The part of a message the router reads.
#[derive(Debug, Deserialize)]
struct View {
    #[serde(default = "first_version")]
    version: u32,
    op: String,
    player_id: Uuid,
    app_id: Uuid,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    parent_player_id: Option<Uuid>,
}

/// The router for the consumer; it also counts updates for `/admin/top` and drops the rows an
/// operator has asked to skip.
pub fn key_router(links: LinkCache, skips: SkipList, top: Busiest) -> KeyRouter {
    Arc::new(move |record: &Record| route(&links, &skips, &top, record))
}

fn first_version() -> u32 {
    FIRST_VERSION
}

fn route(links: &LinkCache, skips: &SkipList, top: &Busiest, record: &Record) -> Vec<Bytes> {
    let payload = record.payload();
    let view = payload.and_then(|p| serde_json::from_slice::<View>(p).ok());
    let key = record.key().and_then(|k| std::str::from_utf8(k).ok());
    let Some(view) = view.filter(|v| key == Some(&v.app_id.to_string())) else {
        let newer = payload.is_some_and(|p| matches!(decode(p), Ok(Decoded::Newer(_))));
        return vec![Bytes::from_static(if newer {
            NEWER_KEY
        } else {
            MALFORMED_KEY
        })];
    };
    let (app, player) = (view.app_id, view.player_id);
    let mut rows = vec![player];
    if is_newer(view.version, &view.op) {
        // Held under its row alone: see the module's doc.
    } else if view.op == "delete" {
        // The parents unlink the child; once routed, the child has none left to reach.
        if let Some(entry) = links.lock().remove(&(app, player)) {
            entries_gauge().decrement(1.0);
            rows.extend(entry.parents.iter().filter(|p| **p != player));
        }
    } else if view.op == "update" {
        let mut map = links.lock();
        if let Some(entry) = map.get(&(app, player)) {
            rows.extend(entry.parents.iter().filter(|p| **p != player));
        }
        let target = view
            .parent_player_id
            .or_else(|| view.email.as_deref().map(|e| email_parent_id(app, e)));
        if let Some(parent) = target {
            if parent != player {
                if !rows.contains(&parent) {
                    rows.push(parent);
                }
                let entry = Entry {
                    parents: vec![parent],
                    routed_at: Some(record.offset()),
                };
                if map.insert((app, player), entry).is_none() {
                    entries_gauge().increment(1.0);
                }
            }
        }
    }
    top.count(app, &rows);
    rows.retain(|row| match skips.matches(app, *row) {
        Some(target) => {
            skips.skipped(target, 1);
            false
        }
        None => true,
    });
    rows.into_iter().map(|row| row_key(app, row)).collect()
}

#[cfg(test)]
mod tests;
