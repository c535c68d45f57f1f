//! The operator's skip list (`PUT/DELETE /admin/skip`): records of a skipped app or row are
//! completed without writing — the hand brake the legacy system's operators pulled on their hot
//! row.
//!
//! The list lives in the `skips` table so that every process obeys it: each polls the table
//! every [`POLL_EVERY`], and the process that took the request applies it at once. The consumer
//! checks it twice: the router drops a skipped row's share of a record before it is queued (so a
//! skipped hot row stops taking memory at once), and the handler checks again for what was
//! queued before.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use uuid::Uuid;

pub use crate::store::SkipTarget;
use crate::store::Store;

/// How often each process reads the table: well inside the promised second.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// The skip list as this process knows it, cheap to clone and to ask.
#[derive(Debug, Clone, Default)]
pub struct SkipList {
    active: Arc<RwLock<HashSet<SkipTarget>>>,
    /// Records skipped per target since the last summary line.
    tally: Arc<Mutex<HashMap<SkipTarget, u64>>>,
}

impl SkipList {
    /// The entry that makes a write of `row` in `app` skipped, if any.
    pub fn matches(&self, app: Uuid, row: Uuid) -> Option<SkipTarget> {
        let active = self.active.read().expect("skip list lock");
        if active.is_empty() {
            return None;
        }
        [SkipTarget::App(app), SkipTarget::Player(row)]
            .into_iter()
            .find(|t| active.contains(t))
    }

    /// Whether the operator has put `app` as a whole on the skip list.
    pub fn app_skipped(&self, app: Uuid) -> bool {
        self.active
            .read()
            .expect("skip list lock")
            .contains(&SkipTarget::App(app))
    }

    /// Counts one skipped record (a metric now, a log line at the next poll).
    pub fn skipped(&self, target: SkipTarget, records: usize) {
        metrics::counter!("subscribers_skipped_records_total", "target" => target.kind())
            .increment(records as u64);
        *self
            .tally
            .lock()
            .expect("skip tally lock")
            .entry(target)
            .or_default() += records as u64;
    }

    /// What this process obeys now.
    pub fn active(&self) -> Vec<SkipTarget> {
        let mut all: Vec<SkipTarget> = self
            .active
            .read()
            .expect("skip list lock")
            .iter()
            .copied()
            .collect();
        all.sort_by_key(|t| (t.kind(), t.id()));
        all
    }

    pub fn insert(&self, target: SkipTarget) {
        self.active.write().expect("skip list lock").insert(target);
    }

    pub fn remove(&self, target: SkipTarget) {
        self.active.write().expect("skip list lock").remove(&target);
    }

    fn replace(&self, all: HashSet<SkipTarget>) {
        *self.active.write().expect("skip list lock") = all;
    }

    /// Follows the table until `shutdown` completes, logging what was skipped since last time.
    pub async fn follow(self, store: Store, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match store.skips().await {
                Ok(all) => self.replace(all),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the skip list; keeping the last one")
                }
            }
            let tally = std::mem::take(&mut *self.tally.lock().expect("skip tally lock"));
            for (target, records) in tally {
                tracing::info!(
                    target = target.kind(),
                    id = %target.id(),
                    records,
                    host = crate::telemetry::host(),
                    "skipped records without writing them"
                );
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }
}
