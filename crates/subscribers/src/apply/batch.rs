//! Updates of rows themselves, from deliveries running at once, written together: one statement
//! ([`rows::update_own`]) — one round trip and one commit — for every such update waiting when a
//! pooled connection comes free.
//!
//! **Why.** Under the apply benchmark's load the database's backends wait mostly on WAL writes
//! and syncs (`pg_stat_activity`): a single-row apply costs a commit and a round trip, and the
//! pool caps how many run at once. Updates that would otherwise queue for a connection share one
//! commit instead. With a connection free at once a batch is the one update: no added wait.
//!
//! **Nothing is weakened.** Every row keeps its own replay guard in the statement, so a batch is
//! as replay-safe as one update. The engine runs at most one delivery of a row at a time, so a
//! batch never holds two updates of one row; a batch is still built to name each row once. When
//! the statement fails (a record the database refuses, a deadlock with a zombie, a lost
//! connection), or the task running it is cancelled, each delivery of the batch writes its update
//! again on its own, so a poison record fails — and is dead-lettered — alone.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::oneshot::{self, error::TryRecvError};
use uuid::Uuid;

use super::plan::{OwnUpdate, Row};
use crate::config::TagLimit;
use crate::store::{rows, Store};

/// At most this many updates in one statement: bounds its size and its locks.
const MAX_BATCH: usize = 256;

/// What happened to one update in a batch: the row as saved, or `None` when the statement wrote
/// nothing (a replay or an unknown row).
type Written = Option<Row>;

/// The updates waiting for a connection. Shared by every handler of one [`super::Applier`].
#[derive(Debug, Default)]
pub(super) struct UpdateBatcher {
    waiting: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Tells a handler's own update from the others when it gives up waiting.
    next_ticket: u64,
    updates: Vec<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    ticket: u64,
    id: Uuid,
    update: OwnUpdate,
    /// Dropped unsent when the batch failed: the delivery then writes alone.
    done: oneshot::Sender<Written>,
}

impl UpdateBatcher {
    /// Writes `update` of row `id`, with whatever other updates are waiting when a connection
    /// comes free.
    pub(super) async fn update(
        &self,
        store: &Store,
        id: Uuid,
        update: OwnUpdate,
        limit: &TagLimit,
    ) -> crate::Result<Written> {
        let (done, mut written) = oneshot::channel();
        let ticket = {
            let mut queue = self.lock();
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.updates.push(Waiting {
                ticket,
                id,
                update: update.clone(),
                done,
            });
            ticket
        };
        // Whichever comes first: our update written by another handler's batch (then we need no
        // connection at all), or a connection to write the waiting ones, ours among them.
        let outcome = tokio::select! {
            w = &mut written => Some(w.map_err(drop)),
            client = store.client() => match client {
                Ok(client) => self.write_batches(&client, &mut written, limit).await,
                // No connection: give up unless another handler's batch has taken ours.
                Err(e) => {
                    let mut queue = self.lock();
                    let before = queue.updates.len();
                    queue.updates.retain(|w| w.ticket != ticket);
                    if queue.updates.len() < before {
                        return Err(e);
                    }
                    None
                }
            },
        };
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => written.await.map_err(drop),
        };
        match outcome {
            Ok(w) => Ok(w),
            // The batch failed: alone, on a connection of our own.
            Err(()) => {
                let client = store.client().await?;
                Ok(rows::update_own(&client, &[(id, &update)], limit)
                    .await?
                    .remove(&id))
            }
        }
    }

    /// Writes the waiting updates on `client`, a batch at a time, until ours is written (or its
    /// batch failed: `Err`); `None` when another handler's batch, still running, has taken it.
    async fn write_batches(
        &self,
        client: &deadpool_postgres::Object,
        written: &mut oneshot::Receiver<Written>,
        limit: &TagLimit,
    ) -> Option<Result<Written, ()>> {
        loop {
            match written.try_recv() {
                Ok(w) => return Some(Ok(w)),
                Err(TryRecvError::Closed) => return Some(Err(())),
                Err(TryRecvError::Empty) => {}
            }
            let batch = self.take();
            if batch.is_empty() {
                return None;
            }
            let updates: Vec<_> = batch.iter().map(|w| (w.id, &w.update)).collect();
            // On failure the batch is dropped unanswered: each of its handlers writes alone.
            if let Ok(mut saved) = rows::update_own(client, &updates, limit).await {
                for w in batch {
                    let _ = w.done.send(saved.remove(&w.id));
                }
            }
        }
    }

    /// The next batch: the oldest waiting updates, at most one per row. Those whose handler has
    /// stopped waiting (its task was cancelled) are dropped rather than written for nobody; one
    /// cancelled once its batch is running is as a statement cancelled mid-flight: the replay
    /// rule makes its write harmless to whoever applies the record next.
    fn take(&self) -> Vec<Waiting> {
        let mut queue = self.lock();
        let mut rows = HashSet::new();
        let (mut batch, mut left) = (Vec::new(), Vec::new());
        for w in queue.updates.drain(..) {
            if w.done.is_closed() {
                continue;
            }
            if batch.len() < MAX_BATCH && rows.insert(w.id) {
                batch.push(w);
            } else {
                left.push(w);
            }
        }
        queue.updates = left;
        batch
    }

    /// How many updates wait for a connection.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.lock().updates.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.waiting
            .lock()
            .expect("no panic holds the waiting updates")
    }
}
