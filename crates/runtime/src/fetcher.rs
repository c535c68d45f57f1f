//! The fetcher thread: takes messages off the partitions' own queues in batches and hands them
//! to the driver, which copies out the records, feeds the engine and runs handlers; the driver
//! sends each batch's messages back here to be destroyed.
//!
//! Why a second thread, and why the work splits this way: taking a record from librdkafka,
//! copying it out and destroying the message costs as much as everything the engine does for
//! it, and one thread doing both was the consumer's ceiling. The fetcher does librdkafka's part
//! (taking messages, parsing their headers, destroying them: allocations and frees with
//! librdkafka's allocator), the driver the copy (allocated and, for a handler that finishes at
//! once, freed on the driver: an allocator serves that from the thread's own free lists, while a
//! buffer allocated on one thread and freed on another costs both). The two halves run side by
//! side; the hand-over is one channel message per batch of up to [`PER_PARTITION`] records, and
//! one back. The queues are `kafkaesque_rdqueue`'s, which take records from librdkafka a batch
//! at a time rather than through `rdkafka`'s poll, one event per record (see that crate for
//! why).
//!
//! What the fetcher may and may not do is decided by the driver, which owns the engine: a
//! partition is polled only while its [`Tap`] is open, and at most [`BATCHES_PER_TAP`] batches
//! of a partition are on their way at once, so what is fetched but not yet in the engine stays
//! bounded per partition. Every poll happens under the tap's lock, which the driver takes to
//! drop a revoked partition's queue or to seek it: once it has, no record of the old queue or
//! position can be taken any more, and batches already on their way carry the tap's `seq`, by
//! which the driver recognises and drops them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use kafkaesque_engine::TopicPartition;
use kafkaesque_rdqueue::{PartitionQueue, Taken};
use rdkafka::error::KafkaError;
use tracing::{debug, warn};

use crate::context::GroupContext;
use crate::record::BatchShared;
use crate::{Record, RecordData};

/// Records taken from one partition's queue per batch, so that a busy partition cannot starve
/// the others.
pub(crate) const PER_PARTITION: usize = 128;
/// A batch stops growing past this many bytes (it always holds at least one record).
const BATCH_BYTES: usize = 1 << 20;
/// Batches of one partition on their way to the driver at most.
const BATCHES_PER_TAP: u32 = 2;
/// Shortest and longest sleep of a fetcher that found nothing to take: a queue receiving
/// something, a tap opening or a batch being taken wakes it sooner, but not always — librdkafka
/// calls a queue's callback only when the queue turns from empty to not empty, and a queue whose
/// last entries were not records (a fetch restart, an outdated batch) answers a poll with
/// nothing while not being empty. The naps lengthen while nothing comes, so an idle consumer
/// costs next to nothing, and a record arriving unannounced waits at most `MAX_NAP`.
const MIN_NAP: Duration = Duration::from_micros(100);
const MAX_NAP: Duration = Duration::from_millis(5);

/// One partition's queue, shared by the driver (which opens, closes, seeks and drops it) and
/// the fetcher (which polls it).
pub(crate) struct Tap {
    pub(crate) tp: TopicPartition,
    /// Tells this tap's batches from those of an earlier queue of the same partition.
    pub(crate) id: u64,
    /// The driver wants records of it (assigned, not held, nothing kept).
    open: AtomicBool,
    /// Its batches taken but not yet handed over by the driver.
    in_transit: AtomicU32,
    inner: Mutex<TapInner>,
}

pub(crate) struct TapInner {
    /// `None` once the partition is revoked.
    pub(crate) queue: Option<PartitionQueue<GroupContext>>,
    /// Raised by the driver whenever it moves the partition's position (a seek): batches taken
    /// before carry the old value.
    pub(crate) seq: u32,
}

impl Tap {
    pub(crate) fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    /// Closes the tap and drops its queue: whatever the fetcher takes afterwards cannot come
    /// from it.
    fn shut(&self) {
        self.set_open(false);
        self.lock().queue = None;
    }

    /// The driver has taken what it wants of one of this tap's batches: the fetcher may take
    /// another.
    pub(crate) fn handed_over(&self, hub: &Hub) {
        if self.in_transit.fetch_sub(1, Ordering::AcqRel) == BATCHES_PER_TAP {
            hub.wake_fetcher();
        }
    }

    /// The queue and its position, with the fetcher kept off them while the guard lives.
    pub(crate) fn lock(&self) -> MutexGuard<'_, TapInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Messages of one partition, in order, taken in one go: read on the driver (see
/// [`Batch::records`]), destroyed on the fetcher (see [`Batch::spend`]).
pub(crate) struct Batch {
    pub(crate) tap: Arc<Tap>,
    pub(crate) seq: u32,
    taken: Taken<GroupContext>,
}

/// What the driver and the fetcher share.
#[derive(Default)]
pub(crate) struct Hub {
    taps: Mutex<Vec<Arc<Tap>>>,
    /// Raised whenever `taps` changes, so that the fetcher copies it only then.
    version: AtomicU64,
    next_id: AtomicU64,
    stop: AtomicBool,
    pub(crate) fetcher: OnceLock<Thread>,
    pub(crate) driver: OnceLock<Thread>,
}

impl Hub {
    /// A tap for a partition's own queue, closed until the driver opens it; the queue's
    /// callback wakes the fetcher whenever it receives something.
    pub(crate) fn add(
        &self,
        tp: TopicPartition,
        mut queue: PartitionQueue<GroupContext>,
    ) -> Arc<Tap> {
        if let Some(f) = self.fetcher.get().cloned() {
            queue.on_nonempty(move || f.unpark());
        }
        let tap = Arc::new(Tap {
            tp,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            open: AtomicBool::new(false),
            in_transit: AtomicU32::new(0),
            inner: Mutex::new(TapInner {
                queue: Some(queue),
                seq: 0,
            }),
        });
        self.taps.lock().expect("taps lock").push(tap.clone());
        self.version.fetch_add(1, Ordering::Release);
        tap
    }

    /// Drops a tap's queue now and forgets the tap (a revoke, or a new queue for the same
    /// partition).
    pub(crate) fn remove(&self, tap: &Tap) {
        tap.shut();
        self.taps
            .lock()
            .expect("taps lock")
            .retain(|t| t.id != tap.id);
        self.version.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn wake_driver(&self) {
        if let Some(t) = self.driver.get() {
            t.unpark();
        }
    }

    pub(crate) fn wake_fetcher(&self) {
        if let Some(t) = self.fetcher.get() {
            t.unpark();
        }
    }

    /// Ends the fetcher's loop (it drops its copies of the taps on the way out).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake_fetcher();
    }

    /// Stops the fetcher and drops every partition's queue. Each queue holds a reference to the
    /// consumer, which (through its context) holds the taps: without this, a driver that ended
    /// by a panic would leave the consumer — and its group membership, kept alive by
    /// librdkafka's own threads — behind.
    pub(crate) fn close(&self) {
        self.stop();
        let taps = std::mem::take(&mut *self.taps.lock().unwrap_or_else(|e| e.into_inner()));
        for tap in taps {
            tap.shut();
        }
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// Closes the hub when dropped, whichever way the driver thread ends.
pub(crate) struct Closing(pub(crate) Arc<Hub>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The fetcher thread's loop: round-robin over the open taps, one batch from each per round.
pub(crate) fn run(
    hub: &Hub,
    tx: &mpsc::Sender<Batch>,
    spent: &mpsc::Receiver<Taken<GroupContext>>,
) {
    let mut taps: Vec<Arc<Tap>> = Vec::new();
    let mut version = u64::MAX;
    let mut next = 0;
    let mut nap = MIN_NAP;
    while !hub.stop.load(Ordering::Acquire) {
        // Destroyed here, where librdkafka's allocations for them were made or freed anyway.
        while let Ok(taken) = spent.try_recv() {
            drop(taken);
        }
        let v = hub.version.load(Ordering::Acquire);
        if v != version {
            taps = hub.taps.lock().expect("taps lock").clone();
            version = v;
        }
        let n = taps.len();
        let mut sent = false;
        for i in 0..n {
            let tap = &taps[(next + i) % n];
            // In this order: the driver closes a tap before it hands a batch over, so a fetcher
            // that sees the batch handed over also sees the tap closed, and a partition never
            // has more than `BATCHES_PER_TAP` batches taken after the record it refused.
            if tap.in_transit.load(Ordering::Acquire) >= BATCHES_PER_TAP
                || !tap.open.load(Ordering::Acquire)
            {
                continue;
            }
            let Some(batch) = take(tap) else { continue };
            tap.in_transit.fetch_add(1, Ordering::AcqRel);
            if tx.send(batch).is_err() {
                return; // the driver is gone
            }
            sent = true;
        }
        next = if n == 0 { 0 } else { (next + 1) % n };
        if sent {
            hub.wake_driver();
            nap = MIN_NAP;
        } else {
            std::thread::park_timeout(nap);
            nap = (nap * 2).min(MAX_NAP);
        }
    }
}

/// Messages taken from a queue per call while a batch grows, so that it stops not far past
/// [`BATCH_BYTES`].
const TAKE: usize = 32;

/// One batch of a tap's messages, if its queue has any.
fn take(tap: &Arc<Tap>) -> Option<Batch> {
    let inner = tap.lock();
    let queue = inner.queue.as_ref()?;
    let mut taken = queue.taken(PER_PARTITION);
    while taken.len() < PER_PARTITION && taken.bytes() < BATCH_BYTES && !taken.failed() {
        let want = TAKE.min(PER_PARTITION - taken.len());
        if queue.take_into(want, &mut taken) < want {
            break;
        }
    }
    let seq = inner.seq;
    drop(inner);
    (!taken.is_empty()).then(|| Batch {
        tap: tap.clone(),
        seq,
        taken,
    })
}

/// Where the driver sends the messages of batches it has read, for the fetcher to destroy.
pub(crate) type Spent = mpsc::Sender<Taken<GroupContext>>;

/// Where the driver receives batches. Owned by the driver thread, not by the driver state: a
/// batch keeps its consumer alive, and the state belongs to the consumer's context, so a batch
/// left in a channel the state owned would keep the consumer — and its group membership — for
/// good. Dropped with the driver thread, however it ends, the channel drops what is left in it.
pub(crate) type Batches = mpsc::Receiver<Batch>;

impl Batch {
    /// Messages taken (records and errors).
    pub(crate) fn len(&self) -> usize {
        self.taken.len()
    }

    /// The batch's records, copied out of librdkafka's messages as they are asked for; errors
    /// librdkafka queued are logged and skipped.
    pub(crate) fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let shared = BatchShared::new(&self.tap.tp.topic);
        let tp = &self.tap.tp;
        self.taken.iter().filter_map(move |m| match m {
            Ok(m) => Some(Record::from(RecordData::from_queued(&m, &shared))),
            Err(KafkaError::PartitionEOF(_)) => {
                debug!(topic = %tp.topic, partition = tp.partition, "end of partition");
                None
            }
            Err(e) => {
                warn!(topic = %tp.topic, partition = tp.partition, error = %e, "partition queue error (librdkafka will retry)");
                None
            }
        })
    }

    /// Sends the batch's messages back to the fetcher, which destroys them (see the module
    /// documentation); once the fetcher is gone, they are destroyed here.
    pub(crate) fn spend(self, spent: &Spent) {
        let _ = spent.send(self.taken);
    }
}
