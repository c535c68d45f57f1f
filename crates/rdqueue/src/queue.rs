//! The queue: split off the consumer's main queue, taken from a batch at a time.

use std::ffi::{c_void, CString};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::Taken;

/// What librdkafka calls when the queue turns non-empty.
type Callback = Box<dyn Fn() + Send + Sync>;

/// One partition's queue, split off the consumer's main queue: its records come only here.
pub struct PartitionQueue<C: ConsumerContext + 'static> {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Boxed twice: librdkafka gets a thin pointer to the inner box, which stays where it is
    /// for as long as it is installed.
    callback: Option<Box<Callback>>,
    /// librdkafka's queue handles and messages must not outlive their client.
    consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: librdkafka's queue functions take the queue's own lock and may be called from any
// thread; the callback is `Send + Sync`, and the consumer is shared through an `Arc`.
unsafe impl<C: ConsumerContext> Send for PartitionQueue<C> {}
// SAFETY: as for `Send`: every operation through `&self` is one of librdkafka's locked calls.
unsafe impl<C: ConsumerContext> Sync for PartitionQueue<C> {}

impl<C: ConsumerContext> fmt::Debug for PartitionQueue<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionQueue")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl<C: ConsumerContext> PartitionQueue<C> {
    /// Gives a partition of `consumer` a queue of its own, as `rdkafka`'s
    /// `BaseConsumer::split_partition_queue` does: from now on its records no longer reach the
    /// main queue. Call it before the partition is assigned, or records fetched in between go
    /// to the main queue. `None` when librdkafka does not know the partition or the topic name
    /// holds a NUL byte.
    pub fn split(consumer: &Arc<BaseConsumer<C>>, topic: &str, partition: i32) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        let client = consumer.client().native_ptr();
        // SAFETY: `client` is live (we hold the consumer) and `topic` is a NUL-terminated string
        // that outlives the call; librdkafka returns a new reference to the queue, or null.
        let raw = unsafe { rd::rd_kafka_queue_get_partition(client, topic.as_ptr(), partition) };
        let queue = NonNull::new(raw)?;
        // SAFETY: `queue` is the reference just returned; forwarding it nowhere keeps its
        // records in it rather than in the consumer's main queue.
        unsafe { rd::rd_kafka_queue_forward(queue.as_ptr(), ptr::null_mut()) };
        Some(PartitionQueue {
            queue,
            callback: None,
            consumer: consumer.clone(),
        })
    }

    /// Calls `f` whenever the queue turns from empty to non-empty (not for every record).
    ///
    /// librdkafka calls it on its own threads, with the queue locked: `f` must be quick and must
    /// not use this queue (waking a thread is what it is for).
    pub fn on_nonempty(&mut self, f: impl Fn() + Send + Sync + 'static) {
        let f: Box<Callback> = Box::new(Box::new(f));
        let opaque = &*f as *const Callback as *mut c_void;
        // SAFETY: the queue is live; `opaque` points at the inner box, which stays put and alive
        // until it is replaced or `Drop` turns the callback off. librdkafka calls the callback
        // only with the queue's lock held, and this call takes that lock to swap it: once it
        // returns, the previous closure is no longer called and may be dropped.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), Some(nonempty), opaque);
        }
        self.callback = Some(f);
    }

    /// An empty [`Taken`] of this queue's consumer, with room for `capacity` messages.
    pub fn taken(&self, capacity: usize) -> Taken<C> {
        Taken::new(self.consumer.clone(), capacity)
    }

    /// Takes up to `max` messages that are in the queue now, without waiting, and appends them
    /// to `into` (records, and errors librdkafka put in the queue). Returns how many it took.
    ///
    /// # Panics
    /// If `into` is not of this queue's consumer (see [`Self::taken`]): it keeps its messages'
    /// client alive, and could not keep another's.
    pub fn take_into(&self, max: usize, into: &mut Taken<C>) -> usize {
        assert!(
            into.is_of(&self.consumer),
            "messages taken into a Taken of another consumer"
        );
        let queue = self.queue.as_ptr();
        let fill = |ptrs, room| {
            // SAFETY: the queue is live; librdkafka writes at most `room` message pointers, now
            // ours, to `ptrs`, which has room for them, and a timeout of 0 returns at once.
            let n = unsafe { rd::rd_kafka_consume_batch_queue(queue, 0, ptrs, room) };
            // Negative only for an invalid argument, which this call never passes.
            usize::try_from(n).unwrap_or(0)
        };
        // SAFETY: `fill` writes only messages librdkafka hands over, at most as many as it is
        // given room for.
        unsafe { into.append(max, fill) }
    }
}

impl<C: ConsumerContext> Drop for PartitionQueue<C> {
    fn drop(&mut self) {
        if self.callback.is_some() {
            // SAFETY: the queue is live; turning the callback off takes the queue's lock, so
            // the closure is not running when it is dropped after this.
            unsafe {
                rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, ptr::null_mut())
            };
        }
        // SAFETY: this is the reference `split` got; nothing uses it after this. The consumer
        // (and so the client) is dropped only after, with the struct's fields.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// The trampoline librdkafka calls with the queue's callback.
unsafe extern "C" fn nonempty(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the pointer `on_nonempty` installed, which stays valid until the
    // callback is swapped or turned off, and librdkafka does not call it after that.
    let f = unsafe { &*(opaque as *const Callback) };
    f();
}
