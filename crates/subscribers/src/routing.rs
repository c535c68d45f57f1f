//! The router: which rows a record writes, decided on the consumer's driver thread, in partition
//! order, without asking the database.
//!
//! A create writes its subscription. An update writes its subscription and, mirrored, the
//! parents it is linked to — so it runs under each of those rows' keys, and no two writes ever
//! touch one row at once. A key names the record's app with the row ([`row_key`]), and the cache
//! knows links by app: a record of one app never runs under, nor routes to, another app's rows. The router knows the links from a [`LinkCache`]: loaded from PostgreSQL whenever
//! partitions are assigned, and kept current by the router itself as it routes updates that carry
//! `email` (routing order is partition order, so a child's later records see its new link).
//!
//! The rule that keeps this correct: **the cache may name more parents than a child has, never
//! fewer.** An update with `email` goes to the new parent (whose id is derived from the address,
//! see [`email_parent_id`]) *and* to every parent the cache knew, which unlink the child; then
//! the cache names the new parent alone. If the new parent refuses the link (the link limit) or
//! the child turns out not to exist, later updates still reach that parent, which finds no link
//! and writes nothing. A load unions what the database holds into the cache rather than
//! replacing it, so links routed but not yet written are never forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafkaesque_runtime::{AssignHook, Record, Router, TopicPartition};
use serde::Deserialize;
use uuid::Uuid;

use crate::message::{email_parent_id, row_key};
use crate::skip::SkipList;
use crate::store::Store;
use crate::top::Top;

/// The ordering key of records that are not messages: they queue together, apart from every
/// row, and are dead-lettered by the handler.
pub const MALFORMED_KEY: &[u8] = b"malformed";

/// (App, child) → the parents it may be linked to (one, except briefly after a crash, when the
/// database can hold an old link whose unlink had not been applied yet). Keyed by the app as
/// well: an update names its child by an id any app can write, and only the child's own app may
/// reach its parents.
#[derive(Debug, Clone, Default)]
pub struct LinkCache {
    inner: Arc<Mutex<Links>>,
}

/// (App, child) → parents.
type Links = HashMap<(Uuid, Uuid), Vec<Uuid>>;

impl LinkCache {
    /// Adds links read from the database, `(app, child, parent)`, to what the cache knows.
    pub fn absorb(&self, links: impl IntoIterator<Item = (Uuid, Uuid, Uuid)>) {
        let mut map = self.inner.lock().expect("link cache lock");
        for (app, child, parent) in links {
            let parents = map.entry((app, child)).or_default();
            if !parents.contains(&parent) {
                parents.push(parent);
            }
        }
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
                Ok(Err(error)) => Err(format!("cannot load the links the router needs: {error}")),
                Err(_) => Err(format!(
                    "cannot load the links the router needs: no answer within {LOAD_TIMEOUT:?}"
                )),
            }
        })
    }
}

/// How long one attempt to load the links may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The part of a message the router reads.
#[derive(Debug, Deserialize)]
struct View {
    op: String,
    player_id: Uuid,
    app_id: Uuid,
    #[serde(default)]
    email: Option<String>,
}

/// The router for the consumer; it also counts updates for `/admin/top` and drops the rows an
/// operator has asked to skip.
pub fn router(links: LinkCache, skips: SkipList, top: Top) -> Router {
    Arc::new(move |record: &Record| route(&links, &skips, &top, record))
}

fn route(links: &LinkCache, skips: &SkipList, top: &Top, record: &Record) -> Vec<Bytes> {
    let view = record
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_slice::<View>(p).ok());
    let key = record
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok());
    let Some(view) = view.filter(|v| key == Some(&v.app_id.to_string())) else {
        return vec![Bytes::from_static(MALFORMED_KEY)];
    };
    let (app, player) = (view.app_id, view.player_id);
    let mut rows = vec![player];
    if view.op == "update" {
        let mut map = links.inner.lock().expect("link cache lock");
        if let Some(parents) = map.get(&(app, player)) {
            rows.extend(parents.iter().filter(|p| **p != player));
        }
        if let Some(email) = &view.email {
            let parent = email_parent_id(app, email);
            if parent != player {
                if !rows.contains(&parent) {
                    rows.push(parent);
                }
                map.insert((app, player), vec![parent]);
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
