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
//! partition is polled only while its [`SharedQueue`] is open, and at most
//! [`BATCHES_PER_QUEUE`] batches of a partition are on their way at once, so what is fetched but
//! not yet in the engine stays bounded per partition. Every poll happens under the queue's lock,
//! which the driver takes to drop a revoked partition's queue or to seek it: once it has, no
//! record of the old queue or position can be taken any more, and batches already on their way
//! carry the queue's `seq`, by which the driver recognises and drops them.
//!
//! The fetcher works for a consumer of any context `C`: it knows queues, not the consumer.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use kafkaesque_engine::TopicPartition;
use kafkaesque_rdqueue::{PartitionQueue, Taken};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use tracing::{debug, warn};

use crate::record::{BatchShared, Record, RecordData};

/// Records taken from one partition's queue per batch, so that a busy partition cannot starve
/// the others.
pub(crate) const PER_PARTITION: usize = 128;
/// A batch stops growing past this many bytes (it always holds at least one record).
const BATCH_BYTES: usize = 1 << 20;
/// Batches of one partition on their way to the driver at most.
const BATCHES_PER_QUEUE: u32 = 2;
/// Shortest and longest sleep of a fetcher that found nothing to take: a queue receiving
/// something, a queue opening or a batch being taken wakes it sooner, but not always —
/// librdkafka calls a queue's callback only when the queue turns from empty to not empty, and a
/// queue whose last entries were not records (a fetch restart, an outdated batch) answers a poll
/// with nothing while not being empty. The naps lengthen while nothing comes, so an idle
/// consumer costs next to nothing, and a record arriving unannounced waits at most `MAX_NAP`.
const MIN_NAP: Duration = Duration::from_micros(100);
const MAX_NAP: Duration = Duration::from_millis(5);

/// One partition's queue, shared by the driver (which opens, closes, seeks and drops it) and
/// the fetcher (which polls it).
pub(crate) struct SharedQueue<C: ConsumerContext + 'static> {
    pub(crate) tp: TopicPartition,
    /// Tells this queue's batches from those of an earlier queue of the same partition.
    pub(crate) id: u64,
    /// The driver wants records of it (assigned, not held, nothing kept).
    open: AtomicBool,
    /// Its batches taken but not yet handed over by the driver.
    in_transit: AtomicU32,
    inner: Mutex<Position<C>>,
}

/// The queue and where in it the driver stands.
struct Position<C: ConsumerContext + 'static> {
    /// `None` once the partition is revoked.
    queue: Option<PartitionQueue<C>>,
    /// Raised by the driver whenever it moves the partition's position (a seek): batches taken
    /// before carry the old value.
    seq: u32,
}

impl<C: ConsumerContext + 'static> SharedQueue<C> {
    pub(crate) fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    /// Closes the queue and drops it: whatever the fetcher takes afterwards cannot come from it.
    fn shut(&self) {
        self.set_open(false);
        self.lock().queue = None;
    }

    /// The driver has taken what it wants of one of this queue's batches: the fetcher may take
    /// another.
    pub(crate) fn handed_over(&self, queues: &Queues<C>) {
        if self.in_transit.fetch_sub(1, Ordering::AcqRel) == BATCHES_PER_QUEUE {
            queues.wake_fetcher();
        }
    }

    /// Moves the partition's position with `seek`, the fetcher kept off the queue meanwhile:
    /// batches taken from here on carry the `seq` returned, those already on their way an older
    /// one.
    pub(crate) fn reposition(&self, seek: impl FnOnce()) -> u32 {
        let mut inner = self.lock();
        inner.seq = inner.seq.wrapping_add(1);
        seek();
        inner.seq
    }

    /// The queue and its position, with the fetcher kept off them while the guard lives.
    fn lock(&self) -> MutexGuard<'_, Position<C>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Messages of one partition, in order, taken in one go: read on the driver (see
/// [`Batch::records`]), destroyed on the fetcher (see [`Batches::give_back`]).
pub(crate) struct Batch<C: ConsumerContext + 'static> {
    pub(crate) queue: Arc<SharedQueue<C>>,
    pub(crate) seq: u32,
    taken: Taken<C>,
}

/// The partitions' queues and the two threads' handles: what the driver and the fetcher share.
pub(crate) struct Queues<C: ConsumerContext + 'static> {
    list: Mutex<Vec<Arc<SharedQueue<C>>>>,
    /// Raised whenever `list` changes, so that the fetcher copies it only then.
    version: AtomicU64,
    next_id: AtomicU64,
    stop: AtomicBool,
    fetcher: OnceLock<Thread>,
    pub(crate) driver: OnceLock<Thread>,
}

impl<C: ConsumerContext + 'static> Default for Queues<C> {
    fn default() -> Self {
        Queues {
            list: Mutex::default(),
            version: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            fetcher: OnceLock::new(),
            driver: OnceLock::new(),
        }
    }
}

impl<C: ConsumerContext + 'static> Queues<C> {
    /// Shares a partition's own queue, closed until the driver opens it; the queue's callback
    /// wakes the fetcher whenever it receives something.
    pub(crate) fn add(
        &self,
        tp: TopicPartition,
        mut queue: PartitionQueue<C>,
    ) -> Arc<SharedQueue<C>> {
        if let Some(f) = self.fetcher.get().cloned() {
            queue.on_nonempty(move || f.unpark());
        }
        let shared = Arc::new(SharedQueue {
            tp,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            open: AtomicBool::new(false),
            in_transit: AtomicU32::new(0),
            inner: Mutex::new(Position {
                queue: Some(queue),
                seq: 0,
            }),
        });
        self.list.lock().expect("queues lock").push(shared.clone());
        self.version.fetch_add(1, Ordering::Release);
        shared
    }

    /// Drops a partition's queue now and forgets it (a revoke, or a new queue for the same
    /// partition).
    pub(crate) fn remove(&self, queue: &SharedQueue<C>) {
        queue.shut();
        self.list
            .lock()
            .expect("queues lock")
            .retain(|q| q.id != queue.id);
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

    /// Ends the fetcher's loop (it drops its copies of the queues on the way out).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake_fetcher();
    }

    /// Stops the fetcher and drops every partition's queue. Each queue holds a reference to the
    /// consumer, which (through its context) holds the queues: without this, a driver that ended
    /// by a panic would leave the consumer — and its group membership, kept alive by
    /// librdkafka's own threads — behind.
    pub(crate) fn close(&self) {
        self.stop();
        let list = std::mem::take(&mut *self.list.lock().unwrap_or_else(|e| e.into_inner()));
        for queue in list {
            queue.shut();
        }
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// Closes the queues when dropped, whichever way the driver thread ends.
pub(crate) struct CloseOnDrop<C: ConsumerContext + 'static>(pub(crate) Arc<Queues<C>>);

impl<C: ConsumerContext + 'static> Drop for CloseOnDrop<C> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Starts the fetcher thread over `queues`; the driver receives its batches from what is
/// returned. Call it before any partition gets a queue: each queue's callback wakes the fetcher.
pub(crate) fn start<C: ConsumerContext + 'static>(
    queues: &Arc<Queues<C>>,
) -> std::io::Result<(JoinHandle<()>, Batches<C>)> {
    let (batch_tx, batch_rx) = mpsc::channel();
    let (read_tx, read_rx) = mpsc::channel();
    let shared = queues.clone();
    let thread = std::thread::Builder::new()
        .name("kafkaesque-fetch".into())
        .spawn(move || run(&shared, &batch_tx, &read_rx))?;
    let _ = queues.fetcher.set(thread.thread().clone());
    let batches = Batches {
        rx: batch_rx,
        read: read_tx,
        ended: std::cell::Cell::new(false),
    };
    Ok((thread, batches))
}

/// The fetcher thread's loop: round-robin over the open queues, one batch from each per round.
fn run<C: ConsumerContext + 'static>(
    queues: &Queues<C>,
    tx: &mpsc::Sender<Batch<C>>,
    read: &mpsc::Receiver<Taken<C>>,
) {
    let mut list: Vec<Arc<SharedQueue<C>>> = Vec::new();
    let mut version = u64::MAX;
    let mut next = 0;
    let mut nap = MIN_NAP;
    while !queues.stop.load(Ordering::Acquire) {
        // Destroyed here, where librdkafka's allocations for them were made or freed anyway.
        while let Ok(taken) = read.try_recv() {
            drop(taken);
        }
        let v = queues.version.load(Ordering::Acquire);
        if v != version {
            list = queues.list.lock().expect("queues lock").clone();
            version = v;
        }
        let n = list.len();
        let mut sent = false;
        for i in 0..n {
            let queue = &list[(next + i) % n];
            // In this order: the driver closes a queue before it hands a batch over, so a
            // fetcher that sees the batch handed over also sees the queue closed, and a
            // partition never has more than `BATCHES_PER_QUEUE` batches taken after the record
            // it refused.
            if queue.in_transit.load(Ordering::Acquire) >= BATCHES_PER_QUEUE
                || !queue.open.load(Ordering::Acquire)
            {
                continue;
            }
            let Some(batch) = take(queue) else { continue };
            queue.in_transit.fetch_add(1, Ordering::AcqRel);
            if tx.send(batch).is_err() {
                return; // the driver is gone
            }
            sent = true;
        }
        next = if n == 0 { 0 } else { (next + 1) % n };
        if sent {
            queues.wake_driver();
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

/// One batch of a queue's messages, if it has any.
fn take<C: ConsumerContext + 'static>(shared: &Arc<SharedQueue<C>>) -> Option<Batch<C>> {
    let inner = shared.lock();
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
        queue: shared.clone(),
        seq,
        taken,
    })
}

/// Where the driver receives batches, and sends the messages of those it has read back to the
/// fetcher to be destroyed.
///
/// Owned by the driver thread, not by the driver state: a batch keeps its consumer alive, and
/// the state belongs to the consumer's context, so a batch left in a channel the state owned
/// would keep the consumer — and its group membership — for good. Dropped with the driver
/// thread, however it ends, the channel drops what is left in it.
pub(crate) struct Batches<C: ConsumerContext + 'static> {
    rx: mpsc::Receiver<Batch<C>>,
    read: mpsc::Sender<Taken<C>>,
    /// The fetcher thread has ended and every batch it sent has been taken.
    ended: std::cell::Cell<bool>,
}

impl<C: ConsumerContext + 'static> Batches<C> {
    /// The next batch the fetcher has handed over, if there is one.
    pub(crate) fn try_next(&self) -> Option<Batch<C>> {
        match self.rx.try_recv() {
            Ok(batch) => Some(batch),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                self.ended.set(true);
                None
            }
        }
    }

    /// Whether the fetcher has stopped and everything it took has been handed over: once it
    /// has, nothing more can arrive.
    pub(crate) fn ended(&self) -> bool {
        self.ended.get()
    }

    /// Sends a read batch's messages back to the fetcher, which destroys them (see the module
    /// documentation); once the fetcher is gone, they are destroyed here.
    pub(crate) fn give_back(&self, batch: Batch<C>) {
        let _ = self.read.send(batch.taken);
    }
}

impl<C: ConsumerContext + 'static> Batch<C> {
    /// Messages taken (records and errors).
    pub(crate) fn len(&self) -> usize {
        self.taken.len()
    }

    /// The batch's records, copied out of librdkafka's messages as they are asked for; errors
    /// librdkafka queued are logged and skipped.
    pub(crate) fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let shared = BatchShared::new(&self.queue.tp.topic);
        let tp = &self.queue.tp;
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
}
