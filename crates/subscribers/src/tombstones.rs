//! Forgetting tombstones once nothing in the topic needs them.
//!
//! A deleted row leaves a tombstone (`deleted_players`) so that a record of the row from before
//! its delete, applied again by a replay, cannot bring the row back. Such a record is older than
//! the delete, and the tombstone's `deleted_at` later still: once the topic can no longer hold a
//! record that old (its retention and segment time, see [`producer::topic_lifetime`], and a
//! margin), no replay can meet one, and the tombstone only grows the table.
//!
//! What changes for a pruned id: a later update of it is dead-lettered as an unknown player
//! rather than `deleted_player`, and an email address deleted that long ago can be subscribed
//! again. A topic that keeps records for good keeps its tombstones for good.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;
use crate::{producer, Config, Result};

/// How often the consumer prunes.
pub const EVERY: Duration = Duration::from_secs(60 * 60);
/// Added to the topic's own bound: the broker checks retention every five minutes by default,
/// and clocks differ.
pub const MARGIN: Duration = Duration::from_secs(60 * 60);
/// Tombstones deleted per statement.
const BATCH: i64 = 10_000;

/// Prunes the tombstones the topic no longer needs; `None` when it keeps records for good.
///
/// # Errors
/// When the topic's configuration cannot be read or the database refuses the delete.
pub async fn prune_once(config: &Config, store: &Store) -> Result<Option<u64>> {
    let Some(lifetime) = producer::topic_lifetime(config).await? else {
        return Ok(None);
    };
    let older_than = lifetime.saturating_add(MARGIN);
    let pruned = store.prune_tombstones(older_than, BATCH).await?;
    metrics::counter!("subscribers_tombstones_pruned_total").increment(pruned);
    if pruned > 0 {
        tracing::info!(
            pruned,
            older_than_s = older_than.as_secs(),
            "pruned tombstones"
        );
    }
    Ok(Some(pruned))
}

/// Prunes every [`EVERY`], from the first time on, until `stopped` completes; a failed attempt
/// is logged and tried again next time.
pub async fn run(config: Arc<Config>, store: Store, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    loop {
        if let Err(error) = prune_once(&config, &store).await {
            tracing::warn!(%error, "cannot prune tombstones; trying again later");
        }
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
