//! The consumer's handler: applies one delivery — one row's change, or a coalesced batch of
//! them — to PostgreSQL in one statement or one transaction.
//!
//! **No two concurrent writes to one row.** The router gives every record the rows it writes as
//! its ordering keys (the subscription, and the parents it is or was linked to), so the engine
//! runs at most one delivery per row at a time, in offset order; a delivery writes only the row
//! it runs under (its `route`) and the link rows that belong to it.
//!
//! **Replay rule.** A row stores the offset of the newest record applied to it (`source_offset`)
//! and a change at or below it is skipped; the new offset is saved in the same statement or
//! transaction as the change. Replays after a crash or a rebalance thus leave the same final
//! state, and so does a coalesced delivery, which carries each change with its own offset.
//!
//! **Two ways to write.** Most deliveries only update their own row. Those go first as one
//! autocommit `UPDATE` (one round trip, shared with the other such updates waiting for a
//! connection: `apply/batch.rs`) that writes the change and its offset only where the row
//! exists in the app and is below the delivery's first offset — exactly the case in which the
//! plan would apply every change. When it writes nothing (a replay, a partial replay, an unknown
//! row), and for every other delivery, the row is locked, read and planned in a transaction
//! (BEGIN, lock, save, COMMIT: four round trips, more with links), which decides why.

mod batch;
mod decode;
pub mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkaesque_runtime::{HandlerError, Record};
use tokio::sync::Notify;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::TagLimit;
use crate::message::{Change, Message};
use crate::routing::LinkCache;
use crate::skip::SkipList;
use crate::store::{rows, Store};
use batch::UpdateBatcher;
use decode::decode;
use plan::{Child, Known, Plan, Stop};

/// How long a parent's delivery waits, in the handler, for a child's own queue to create it
/// before handing the delivery back to the engine as a transient failure (retried, never
/// dead-lettered).
const PENDING_WAIT: Duration = Duration::from_secs(2);

/// Applies deliveries. Cheap to clone: one per handler task.
#[derive(Debug, Clone)]
pub struct Applier {
    store: Store,
    skips: SkipList,
    link_limit: i32,
    tag_limit: TagLimit,
    /// The router's link cache: what an update naming a subscription that does not exist taught
    /// it is forgotten.
    links: LinkCache,
    /// Woken whenever a row is created or found unknown: what a pending parent waits for.
    settled: Arc<Notify>,
    /// Updates of rows themselves waiting to be written together.
    batcher: Arc<UpdateBatcher>,
}

/// Why a delivery did not apply.
enum Failed {
    Stop(Stop),
    Db(crate::Error),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Failed::Db(e.into())
    }
}

impl From<crate::Error> for Failed {
    fn from(e: crate::Error) -> Self {
        Failed::Db(e)
    }
}

impl Applier {
    pub fn new(store: Store, skips: SkipList, link_limit: u32) -> Self {
        Applier {
            store,
            skips,
            link_limit: i32::try_from(link_limit).unwrap_or(i32::MAX),
            tag_limit: TagLimit::default(),
            links: LinkCache::default(),
            settled: Arc::default(),
            batcher: Arc::default(),
        }
    }

    /// This applier, forgetting in `links` (the router's) what updates naming subscriptions that
    /// do not exist taught it.
    pub fn with_links(mut self, links: LinkCache) -> Self {
        self.links = links;
        self
    }

    /// This applier with `limit` on each subscription's tags (the default otherwise).
    pub fn with_tag_limit(mut self, limit: TagLimit) -> Self {
        self.tag_limit = limit;
        self
    }

    /// The handler the runtime calls, once per row a record touches.
    pub async fn handle(&self, record: Record) -> Result<(), HandlerError> {
        let (app, row, changes) = decode(&record)?;
        let span = tracing::info_span!(
            "apply",
            app_id = %app,
            player_id = %row,
            partition = record.partition(),
            offset = record.offset(),
            records = record.coalesced(),
            host = crate::telemetry::host(),
        );
        self.apply(app, row, &changes, &record)
            .instrument(span)
            .await
    }

    async fn apply(
        &self,
        app: Uuid,
        row: Uuid,
        changes: &[Change],
        record: &Record,
    ) -> Result<(), HandlerError> {
        if let Some(target) = self.skips.matches(app, row) {
            self.skips.skipped(target, record.coalesced());
            tracing::debug!(target = target.kind(), "skipped");
            return Ok(());
        }
        let deadline = Instant::now() + PENDING_WAIT;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            match self.try_apply(app, row, changes).await {
                Ok((plan, orphans)) => {
                    self.applied(app, row, &plan);
                    if plan.delete.is_some() {
                        self.links.unlink_parent(app, row, &orphans);
                    }
                    let deleted = match plan.after_delete.first() {
                        Some(first) => {
                            let changes = *first..=record.offset();
                            Some(self.unknown(app, row, changes, Unknown::Deleted).await)
                        }
                        None => None,
                    };
                    return match deleted.or_else(|| over_tag_limit(row, &plan)) {
                        Some(refused) => Err(refused),
                        None => Ok(()),
                    };
                }
                Err(Failed::Stop(Stop::Unknown { offset })) => {
                    let changes = offset..=record.offset();
                    return Err(self.unknown(app, row, changes, Unknown::Missing).await);
                }
                Err(Failed::Stop(Stop::Foreign { offset })) => {
                    let changes = offset..=record.offset();
                    return Err(self.unknown(app, row, changes, Unknown::Foreign).await);
                }
                Err(Failed::Stop(Stop::Pending { child })) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(HandlerError::transient(format!(
                            "child {child} asks to be linked but is not created yet"
                        )));
                    }
                    let _ = tokio::time::timeout(left, settled).await;
                }
                Err(Failed::Db(e)) => return Err(e.into_handler_error()),
            }
        }
    }

    /// Applies the changes; gives back the plan and, when it deleted the row, the children that
    /// were linked to it.
    async fn try_apply(
        &self,
        app: Uuid,
        id: Uuid,
        changes: &[Change],
    ) -> Result<(Plan, Vec<Uuid>), Failed> {
        if let Some(own) = plan::own_update(id, changes) {
            let limit = &self.tag_limit;
            if let Some(saved) = self.batcher.update(&self.store, id, own, limit).await? {
                let plan = Plan {
                    save: Some(saved),
                    ..Plan::default()
                };
                return Ok((plan, Vec::new()));
            }
        }
        let mut client = self.store.client().await?;
        let tx = client.transaction().await?;
        let row = rows::lock(&tx, id).await?;
        let mut known = self.known(&tx, app, id, row.is_some(), changes).await?;
        if row.is_none() {
            known.deleted = rows::tombstone(&tx, id).await?;
        }
        let plan = plan::plan(id, row, changes, &known).map_err(Failed::Stop)?;
        let mut orphans = Vec::new();
        if let Some(offset) = plan.delete {
            orphans = rows::delete(&tx, app, id, offset).await?;
        }
        if let Some(saved) = &plan.save {
            rows::save(&tx, id, saved).await?;
        }
        rows::unlink(&tx, app, id, &plan.unlink).await?;
        rows::link(&tx, app, id, &plan.link).await?;
        tx.commit().await?;
        Ok((plan, orphans))
    }

    /// The links of the children in `changes`, and whether those asking to be linked exist.
    async fn known(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        app: Uuid,
        id: Uuid,
        exists: bool,
        changes: &[Change],
    ) -> Result<Known, Failed> {
        let mut children = Vec::new();
        let mut asking = Vec::new();
        for c in changes {
            match &c.message {
                Message::Update(u) if u.player_id != id => {
                    children.push(u.player_id);
                    if u.link_target() == Some(id) {
                        asking.push(u.player_id);
                    }
                }
                Message::Delete(d) if d.player_id != id => children.push(d.player_id),
                _ => {}
            }
        }
        children.sort_unstable();
        children.dedup();
        asking.sort_unstable();
        asking.dedup();
        let linked = if exists {
            rows::linked(tx, app, id, &children).await?
        } else {
            Default::default()
        };
        // Every child asking, linked or not: within the batch it may leave and come back.
        let found = rows::existing(tx, app, &asking).await?;
        let missing: Vec<Uuid> = asking
            .iter()
            .filter(|c| !found.contains(c))
            .copied()
            .collect();
        let rejected = rows::rejected(tx, app, &missing).await?;
        let deleted = rows::deleted(tx, app, &missing).await?;
        let children = asking
            .iter()
            .map(|c| {
                let state = match (found.contains(c), rejected.get(c)) {
                    (true, _) => Child::Exists,
                    (false, _) if deleted.contains(c) => Child::Deleted,
                    (false, Some(at)) => Child::Rejected(*at),
                    (false, None) => Child::Unseen,
                };
                (*c, state)
            })
            .collect();
        Ok(Known {
            linked,
            children,
            link_limit: self.link_limit,
            tag_limit: self.tag_limit,
            deleted: None,
        })
    }

    fn applied(&self, app: Uuid, row: Uuid, plan: &Plan) {
        if plan.created {
            self.settled.notify_waiters();
        }
        for (child, offset) in &plan.refused {
            metrics::counter!("subscribers_links_refused_total").increment(1);
            tracing::warn!(
                %app, parent_player_id = %row, child_player_id = %child, source_offset = offset,
                limit = self.link_limit,
                "link refused: the parent has reached the link limit"
            );
        }
        for (child, offset) in &plan.mirrored_tags_refused {
            metrics::counter!("subscribers_mirrored_tags_refused_total").increment(1);
            tracing::warn!(
                %app, parent_player_id = %row, child_player_id = %child, source_offset = offset,
                max_tags = self.tag_limit.max_tags, max_bytes = self.tag_limit.max_bytes,
                "mirrored tags left out: the parent would exceed the tag limit"
            );
        }
        for (child, offset) in &plan.not_email_parent {
            metrics::counter!("subscribers_links_refused_total").increment(1);
            tracing::warn!(
                %app, parent_player_id = %row, child_player_id = %child, source_offset = offset,
                "link refused: parent_player_id names no email subscription of the app"
            );
        }
        for (child, offset) in &plan.links_to_deleted {
            metrics::counter!("subscribers_links_to_deleted_total").increment(1);
            tracing::warn!(
                %app, parent_player_id = %row, child_player_id = %child, source_offset = offset,
                "link refused: the parent was deleted"
            );
        }
        if plan.delete.is_some() {
            metrics::counter!("subscribers_deletes_total").increment(1);
        }
        metrics::counter!("subscribers_links_total").increment(plan.link.len() as u64);
        metrics::counter!("subscribers_replayed_changes_total").increment(plan.replayed as u64);
        if plan.foreign > 0 {
            metrics::counter!("subscribers_foreign_changes_total").increment(plan.foreign as u64);
            tracing::warn!(
                foreign = plan.foreign,
                "another app's changes reached this row as a parent: ignored"
            );
        }
        if plan.save.is_some() {
            metrics::counter!("subscribers_row_writes_total").increment(1);
        }
        tracing::debug!(
            created = plan.created,
            linked = plan.link.len(),
            unlinked = plan.unlink.len(),
            replayed = plan.replayed,
            "applied"
        );
    }

    /// Records the verdict a waiting parent needs — the row is not (or no longer) one of
    /// `app`'s — and
    /// dead-letters the delivery, whose changes at `offsets` (from the one that stopped it to
    /// the newest it carries) are all refused: a parent waiting on a link request of any of them
    /// finds the verdict. What they taught the link cache is forgotten.
    async fn unknown(
        &self,
        app: Uuid,
        row: Uuid,
        offsets: std::ops::RangeInclusive<i64>,
        why: Unknown,
    ) -> HandlerError {
        let recorded = async {
            let client = self.store.client().await?;
            rows::record_rejected(&client, app, row, *offsets.end()).await?;
            Ok::<_, crate::Error>(())
        };
        if let Err(e) = recorded.await {
            return e.into_handler_error();
        }
        self.links.forget(app, row, offsets.clone());
        self.settled.notify_waiters();
        match why {
            Unknown::Missing => {
                metrics::counter!("subscribers_unknown_player_total").increment(1);
                tracing::warn!("update of a subscription that does not exist: dead-lettered");
                HandlerError::rejected(
                    "unknown_player",
                    format!("subscription {row} does not exist in app {app}"),
                )
            }
            Unknown::Deleted => {
                metrics::counter!("subscribers_deleted_player_total").increment(1);
                tracing::warn!("change of a deleted subscription: dead-lettered");
                HandlerError::rejected(
                    "deleted_player",
                    format!(
                        "subscription {row} of app {app} was deleted: its changes at offsets \
                         {offsets:?} came after the delete and are refused; the rest of the \
                         delivery applied"
                    ),
                )
            }
            Unknown::Foreign => {
                metrics::counter!("subscribers_foreign_player_total").increment(1);
                tracing::warn!("change of another app's subscription: dead-lettered");
                HandlerError::rejected(
                    "foreign_player",
                    format!("subscription {row} is not in app {app}: it belongs to another app"),
                )
            }
        }
    }
}

/// The dead letter of a delivery some of whose updates the tag limit refused: the rest of it is
/// applied (a replay of the dead letter skips them by their offsets), the refused updates named.
fn over_tag_limit(row: Uuid, plan: &Plan) -> Option<HandlerError> {
    let (first, why) = plan.over_tag_limit.first()?;
    let refused = plan.over_tag_limit.len();
    metrics::counter!("subscribers_tag_limit_refused_total").increment(refused as u64);
    tracing::warn!(refused, first_offset = first, %why, "update over the tag limit: dead-lettered");
    let offsets: Vec<i64> = plan.over_tag_limit.iter().map(|(o, _)| *o).collect();
    Some(HandlerError::rejected(
        "tag_limit",
        format!(
            "tags: the update at offset {first} would leave subscription {row} with {why}; \
             refused at offsets {offsets:?}, the rest of the delivery applied"
        ),
    ))
}

/// Why a row is not one a delivery's app may change.
#[derive(Debug, Clone, Copy)]
enum Unknown {
    /// No such row.
    Missing,
    /// The row is another app's.
    Foreign,
    /// The row was deleted.
    Deleted,
}

#[cfg(test)]
mod changes;
#[cfg(test)]
mod tests;
