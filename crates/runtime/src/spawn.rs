//! Starting handlers: as tokio tasks, or polled once on the driver thread first.
//!
//! By default a handler's future goes straight to the runtime as a task that reports on the
//! event channel: user code never runs on the driver thread, so a handler that does synchronous
//! work before its first `.await` blocks one tokio worker, not the polling of every partition.
//!
//! With [`ConsumerBuilder::inline_first_poll`](crate::ConsumerBuilder::inline_first_poll) the
//! future is polled once right where the driver starts it (the driver thread has entered the
//! tokio runtime for its whole life, see [`Consumer::run`](crate::Consumer::run)): a handler that
//! finishes without waiting (a filter, a cache hit, an in-memory update) then costs no task, no
//! channel and no thread hand-off, and its result is known at once; one that has to wait becomes
//! a task. That is for handlers the user declares cheap and non-blocking.
//!
//! A panicking handler counts as a retriable failure, never as a lost item; one that runs past
//! the handler timeout, as a timed-out attempt.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafkaesque_engine::WorkId;

use crate::events::{Event, EventTx};
use crate::{Handler, HandlerError, Record};

/// A handler run that has to wait, until it is handed to the runtime.
pub(crate) type Waiting = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

/// What starting a handler came to.
pub(crate) enum Started {
    /// It finished without waiting.
    Finished(Result<(), HandlerError>),
    /// It has to wait: hand it over with [`Spawner::wait`] once it has an id.
    Waiting(Waiting),
}

/// A run to become a task, with what its task reports.
struct Launch {
    fut: Waiting,
    id: WorkId,
    started: Instant,
}

/// Starts handlers (see the module documentation). Used by the driver thread only.
///
/// Runs that wait are not spawned from the driver thread one by one: a spawn from outside the
/// runtime's workers goes through its shared queue and wakes a worker each time, which cost the
/// no-op run several microseconds per record. They are collected and handed over in one message
/// per driver pass to a launcher task, whose spawns, made on a worker, go to that worker's own
/// queue.
pub(crate) struct Spawner {
    start: Box<dyn FnMut(Record) -> Started + Send>,
    pending: Vec<Launch>,
    launcher: tokio::sync::mpsc::UnboundedSender<Vec<Launch>>,
}

impl Spawner {
    /// Must be called inside the tokio runtime the handlers are to run on. `inline`: poll each
    /// run once on the calling thread first (see the module documentation).
    pub(crate) fn new<H: Handler>(
        handler: Arc<H>,
        tx: EventTx,
        inline: bool,
        timeout: Option<Duration>,
    ) -> Self {
        let call = move |record| {
            let handler = handler.clone();
            AssertUnwindSafe(async move { handler.handle(record).await })
                .catch_unwind()
                .map(|r| r.unwrap_or_else(|_| Err(HandlerError::retry("handler panicked"))))
        };
        // The box of the last handler that finished without waiting, kept to hold the next one:
        // a finished future owns nothing any more, and reusing its box spares an allocation and
        // a free per record.
        let mut spare = None;
        let start = move |record| {
            if !inline {
                return Started::Waiting(Box::pin(call(record)));
            }
            let mut fut = match spare.take() {
                Some(mut boxed) => {
                    Pin::set(&mut boxed, call(record));
                    boxed
                }
                None => Box::pin(call(record)),
            };
            match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => {
                    spare = Some(fut);
                    Started::Finished(result)
                }
                Poll::Pending => Started::Waiting(fut),
            }
        };
        let (launcher, mut launches) = tokio::sync::mpsc::unbounded_channel::<Vec<Launch>>();
        tokio::runtime::Handle::current().spawn(async move {
            while let Some(batch) = launches.recv().await {
                for Launch { fut, id, started } in batch {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let result = within(timeout, fut).await;
                        let _ = tx.send(Event::Done {
                            id,
                            result,
                            elapsed: started.elapsed(),
                        });
                    });
                }
            }
        });
        Spawner {
            start: Box::new(start),
            pending: Vec::new(),
            launcher,
        }
    }

    /// Starts the handler on `record`.
    pub(crate) fn start(&mut self, record: Record) -> Started {
        (self.start)(record)
    }

    /// Lets a waiting run go on as a task, which reports its outcome as `id`, at the next
    /// [`Spawner::flush`].
    pub(crate) fn wait(&mut self, fut: Waiting, id: WorkId) {
        self.pending.push(Launch {
            fut,
            id,
            started: Instant::now(),
        });
    }

    /// Hands the runs collected since the last flush to the launcher.
    pub(crate) fn flush(&mut self) {
        if !self.pending.is_empty() {
            // The launcher ends only with the runtime, and then nothing runs anyway.
            let _ = self.launcher.send(std::mem::take(&mut self.pending));
        }
    }
}

/// A run's result, or a timed-out attempt once `timeout` has passed.
pub(crate) async fn within(
    timeout: Option<Duration>,
    run: impl Future<Output = Result<(), HandlerError>>,
) -> Result<(), HandlerError> {
    match timeout {
        None => run.await,
        Some(limit) => tokio::time::timeout(limit, run)
            .await
            .unwrap_or_else(|_| Err(HandlerError::timed_out(limit))),
    }
}

/// How long a run that finished without waiting took: not worth two clock reads.
pub(crate) const AT_ONCE: Duration = Duration::ZERO;
