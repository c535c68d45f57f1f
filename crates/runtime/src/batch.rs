//! The batch handler: many records per call, per-key order kept.
//!
//! A batch is made of the records the engine dispatches (see
//! [`kafkaesque_engine::Batcher`]): with key ordering, at most one record per key, from any
//! assigned partition, and a key's records reach the handler in offset order within and across
//! batches, because the engine dispatches a key's next record only once the batch holding the
//! previous one has ended. A batch is handed over when it holds
//! [`max_records`](crate::ConsumerBuilder::batch), when its first record has waited
//! `max_wait`, or at once when the concurrency is used up (no more records could join it).
//!
//! The handler's result applies to every record of the batch: on success they all complete; on
//! failure each of them has failed one attempt of its own — retried after its back-off (usually
//! in a later batch, with other records), then dead-lettered when its attempts are used up, or
//! at once for [`FailureKind::Fatal`](crate::FailureKind::Fatal). Commits stay per record.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafkaesque_engine::{Batcher, Millis, WorkId};

use crate::events::{Event, EventTx};
use crate::spawn::{within, Spawner};
use crate::{HandlerError, Record};

/// Processes a batch of records. With key ordering a batch holds at most one record per key, from
/// any assigned partition, and a key's records arrive in offset order within and across batches;
/// it is handed over at [`ConsumerBuilder::batch`](crate::ConsumerBuilder::batch)'s size, after
/// its wait, or when the concurrency is used up. The result applies to every record of the
/// batch: on failure each has failed one attempt, and is retried (or dead-lettered) on its own.
/// Runs as a tokio task on the runtime that called
/// [`Consumer::run_batches`](crate::Consumer::run_batches); several batches may run at once, but
/// a key is never in two of them.
///
/// Any `Fn(Vec<Record>) -> impl Future<Output = Result<(), HandlerError>>` is a batch handler.
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles `batch`; its outcome is every record's outcome.
    fn handle(&self, batch: Vec<Record>) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

impl<F, Fut> BatchHandler for F
where
    F: Fn(Vec<Record>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, batch: Vec<Record>) -> impl Future<Output = Result<(), HandlerError>> + Send {
        self(batch)
    }
}

type Call = Arc<
    dyn Fn(Vec<Record>) -> Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>
        + Send
        + Sync,
>;

/// Gathers dispatched records into batches and runs each as a task. Used by the driver thread
/// only.
pub(crate) struct BatchSpawner {
    batcher: Batcher<Record>,
    call: Call,
    rt: tokio::runtime::Handle,
    tx: EventTx,
    timeout: Option<Duration>,
}

impl BatchSpawner {
    /// Must be called inside the tokio runtime the handlers are to run on.
    pub(crate) fn new<H: BatchHandler>(
        handler: Arc<H>,
        tx: EventTx,
        (max_records, max_wait): (usize, Duration),
        timeout: Option<Duration>,
    ) -> Self {
        let call: Call = Arc::new(move |batch| {
            let handler = handler.clone();
            Box::pin(
                AssertUnwindSafe(async move { handler.handle(batch).await })
                    .catch_unwind()
                    .map(|r| r.unwrap_or_else(|_| Err(HandlerError::retry("handler panicked")))),
            )
        });
        BatchSpawner {
            batcher: Batcher::new(max_records, max_wait.as_millis() as Millis),
            call,
            rt: tokio::runtime::Handle::current(),
            tx,
            timeout,
        }
    }

    /// A record the engine dispatched as `id` at `now`.
    pub(crate) fn push(&mut self, id: WorkId, record: Record, now: Millis) {
        if let Some(batch) = self.batcher.push(id, record, now) {
            self.run(batch);
        }
    }

    /// Hands over the batch gathered so far if it is due (see [`Batcher::due`]).
    pub(crate) fn flush_due(&mut self, now: Millis, stalled: bool) {
        if let Some(batch) = self.batcher.due(now, stalled) {
            self.run(batch);
        }
    }

    fn run(&self, batch: Vec<(WorkId, Record)>) {
        let (ids, records): (Vec<WorkId>, Vec<Record>) = batch.into_iter().unzip();
        let started = Instant::now();
        let (tx, timeout) = (self.tx.clone(), self.timeout);
        let fut = (self.call)(records);
        self.rt.spawn(async move {
            let result = within(timeout, fut).await;
            let elapsed = started.elapsed();
            for id in ids {
                let _ = tx.send(Event::Done {
                    id,
                    result: result.clone(),
                    elapsed,
                });
            }
        });
    }
}

/// How the driver runs user code: one record per call, or batches.
pub(crate) enum Handlers {
    Each(Spawner),
    Batched(BatchSpawner),
}
