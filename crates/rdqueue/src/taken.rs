//! Messages taken off a queue and not read yet: owned, so they can be read on another thread.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;

use crate::message::Read;
use crate::Message;

/// Messages taken by [`PartitionQueue::take_into`](crate::PartitionQueue::take_into), in
/// order, read as they were taken (see [`Message`]); they are destroyed when this is dropped.
///
/// Why owned rather than lent: what it costs to consume a record splits into librdkafka's part
/// (taking the message, parsing its headers, destroying it: allocations and frees in
/// librdkafka) and the reader's (copying the key and payload into buffers of its own). Owned,
/// the messages can be taken on one thread, read on another, and destroyed back on the first,
/// so that each allocator's buffers are allocated and freed on one thread, and the two halves of
/// the work run side by side.
pub struct Taken<C: ConsumerContext + 'static> {
    /// librdkafka's messages.
    ptrs: Vec<*mut rd::rd_kafka_message_t>,
    /// What was read of each, in the same order.
    read: Vec<Result<Read, KafkaError>>,
    bytes: usize,
    failed: bool,
    /// librdkafka's messages must not outlive their client.
    consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: the messages are librdkafka's, which may be read and destroyed on any thread, and what
// was read of them points into them; only the holder of the `Taken` reaches either, and the
// consumer is shared through an `Arc`.
unsafe impl<C: ConsumerContext> Send for Taken<C> {}

impl<C: ConsumerContext> fmt::Debug for Taken<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Taken")
            .field("len", &self.ptrs.len())
            .field("bytes", &self.bytes)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<C: ConsumerContext> Taken<C> {
    pub(crate) fn new(consumer: Arc<BaseConsumer<C>>, capacity: usize) -> Self {
        Taken {
            ptrs: Vec::with_capacity(capacity),
            read: Vec::with_capacity(capacity),
            bytes: 0,
            failed: false,
            consumer,
        }
    }

    pub(crate) fn is_of(&self, consumer: &Arc<BaseConsumer<C>>) -> bool {
        Arc::ptr_eq(&self.consumer, consumer)
    }

    /// Appends up to `max` messages with `fill`, which writes pointers to the spare room it is
    /// given and returns how many it wrote.
    ///
    /// # Safety
    /// `fill` must write only messages from librdkafka, now owned by this `Taken`, and return
    /// at most the number of pointers it was given room for.
    pub(crate) unsafe fn append(
        &mut self,
        max: usize,
        fill: impl FnOnce(*mut *mut rd::rd_kafka_message_t, usize) -> usize,
    ) -> usize {
        self.ptrs.reserve(max);
        let len = self.ptrs.len();
        // SAFETY: `reserve` made room for `max` more pointers after `len`.
        let spare = unsafe { self.ptrs.as_mut_ptr().add(len) };
        let n = fill(spare, max).min(max);
        // SAFETY: the caller's promise: `fill` wrote `n` initialised pointers there.
        unsafe { self.ptrs.set_len(len + n) };
        for &p in &self.ptrs[len..] {
            let read = match NonNull::new(p) {
                // SAFETY: a message just taken from librdkafka, alive until this `Taken`
                // destroys it.
                Some(p) => unsafe { Read::of(p) },
                None => Err(KafkaError::NoMessageReceived),
            };
            match &read {
                Ok(r) => self.bytes += r.bytes(),
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(_) => self.failed = true,
            }
            self.read.push(read);
        }
        n
    }

    /// Messages taken (records and errors), read or not.
    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.ptrs.len()
    }

    /// Whether it holds none (the last take found the queue empty).
    pub fn is_empty(&self) -> bool {
        self.ptrs.is_empty()
    }

    /// Bytes of the records' keys and payloads.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether it holds an error other than the end of a partition: what follows an error is
    /// better taken once librdkafka has dealt with it.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The messages, in order: records, and errors librdkafka put in the queue.
    pub fn iter(&self) -> impl Iterator<Item = Result<Message<'_>, KafkaError>> + '_ {
        self.read.iter().map(|r| match r {
            // SAFETY: the messages are destroyed only when this `Taken` is dropped, which the
            // borrow of `self` rules out meanwhile.
            Ok(r) => Ok(unsafe { r.lend() }),
            Err(e) => Err(e.clone()),
        })
    }
}

impl<C: ConsumerContext> Drop for Taken<C> {
    fn drop(&mut self) {
        // A null entry (which librdkafka never writes) was read as an error, and is skipped.
        for p in self.ptrs.drain(..).filter(|p| !p.is_null()) {
            // SAFETY: `p` came from librdkafka and, drained from the list, is destroyed exactly
            // once; nothing borrows the messages any more.
            unsafe { rd::rd_kafka_message_destroy(p) };
        }
    }
}
