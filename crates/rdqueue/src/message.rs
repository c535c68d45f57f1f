//! A message read from a [`Taken`](crate::Taken), and its headers.

use std::ffi::CStr;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Timestamp;

/// A record read from a [`Taken`](crate::Taken) (see [`Taken::iter`](crate::Taken::iter)).
pub struct Message<'a> {
    read: Read,
    _message: PhantomData<&'a rd::rd_kafka_message_t>,
}

/// Everything a reader asks of a message, read when it is taken.
///
/// Why then: librdkafka allocates each message on its own thread, wherever its allocator puts
/// it, and the taking thread reads it anyway (to tell records from errors and to size a batch).
/// The reader then finds the fields side by side in the [`Taken`](crate::Taken), and touches
/// none of librdkafka's memory but the key and payload bytes, which lie in order in the fetched
/// buffer.
#[derive(Clone, Copy)]
pub(crate) struct Read {
    partition: i32,
    offset: i64,
    key: *const u8,
    key_len: usize,
    payload: *const u8,
    len: usize,
    timestamp: Timestamp,
    /// Parsed by librdkafka, which owns the list and frees it with the message; null when the
    /// record has none.
    hdrs: *const rd::rd_kafka_headers_t,
}

impl Read {
    /// A record's fields (its headers parsed), or the error librdkafka queued in its place.
    ///
    /// # Safety
    /// `ptr` must be a live message from librdkafka. What is read stays valid until the message
    /// is destroyed.
    pub(crate) unsafe fn of(ptr: NonNull<rd::rd_kafka_message_t>) -> Result<Self, KafkaError> {
        // SAFETY: the caller's promise; the public fields are only read.
        let m = unsafe { ptr.as_ref() };
        match m.err {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {}
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                return Err(KafkaError::PartitionEOF(m.partition));
            }
            e => return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(e))),
        }
        let mut hdrs = ptr::null_mut();
        // SAFETY: the message is live; librdkafka parses its headers into a list it owns (and
        // frees with the message), or says there are none.
        let err = unsafe { rd::rd_kafka_message_headers(ptr.as_ptr(), &mut hdrs) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            hdrs = ptr::null_mut();
        }
        Ok(Read {
            partition: m.partition,
            offset: m.offset,
            key: m.key.cast_const().cast(),
            key_len: m.key_len,
            payload: m.payload.cast_const().cast(),
            len: m.len,
            // SAFETY: the message is live.
            timestamp: unsafe { timestamp(ptr) },
            hdrs: hdrs.cast_const(),
        })
    }

    /// Bytes of the key and payload.
    pub(crate) fn bytes(&self) -> usize {
        self.key_len + self.len
    }

    /// The record as lent for `'a`.
    ///
    /// # Safety
    /// The message it was read from must not be destroyed during `'a`.
    pub(crate) unsafe fn lend<'a>(self) -> Message<'a> {
        Message {
            read: self,
            _message: PhantomData,
        }
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("partition", &self.read.partition)
            .field("offset", &self.read.offset)
            .finish_non_exhaustive()
    }
}

impl<'a> Message<'a> {
    /// The partition the message was fetched from (its queue's).
    pub fn partition(&self) -> i32 {
        self.read.partition
    }

    /// Its offset in that partition.
    pub fn offset(&self) -> i64 {
        self.read.offset
    }

    /// Its key, borrowed from librdkafka's message for as long as the [`Taken`](crate::Taken)
    /// is borrowed; `None` for a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: librdkafka's key pointer, when set, points at `key_len` bytes that live as
        // long as the message, which outlives `'a`.
        unsafe { bytes(self.read.key, self.read.key_len) }
    }

    /// Its value, borrowed as the key is; `None` for a null value (a tombstone).
    pub fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: as for the key.
        unsafe { bytes(self.read.payload, self.read.len) }
    }

    /// Its timestamp and what kind it is (create time or log-append time), as librdkafka read it.
    pub fn timestamp(&self) -> Timestamp {
        self.read.timestamp
    }

    /// The record's headers, in order (parsed by librdkafka when the message was taken).
    pub fn headers(&self) -> Headers<'a> {
        let hdrs = self.read.hdrs;
        let count = if hdrs.is_null() {
            0
        } else {
            // SAFETY: `hdrs` is the message's live header list.
            unsafe { rd::rd_kafka_header_cnt(hdrs) }
        };
        Headers {
            hdrs,
            next: 0,
            count,
            _message: PhantomData,
        }
    }
}

/// A message's timestamp and its kind.
///
/// # Safety
/// `ptr` must be a live message.
unsafe fn timestamp(ptr: NonNull<rd::rd_kafka_message_t>) -> Timestamp {
    let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    // SAFETY: the caller's promise; `kind` is a valid place to write the type to.
    let t = unsafe { rd::rd_kafka_message_timestamp(ptr.as_ptr(), &mut kind) };
    match kind {
        rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE => Timestamp::NotAvailable,
        rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => Timestamp::CreateTime(t),
        rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => {
            Timestamp::LogAppendTime(t)
        }
    }
}

/// A message's headers; see [`Message::headers`].
pub struct Headers<'a> {
    hdrs: *const rd::rd_kafka_headers_t,
    next: usize,
    count: usize,
    _message: PhantomData<&'a rd::rd_kafka_message_t>,
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Headers")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// One header: its name as sent (not checked to be UTF-8) and its value, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name's bytes; Kafka does not promise UTF-8, so the caller decides how to read them.
    pub name: &'a [u8],
    /// The value; `None` for a null value, which Kafka tells apart from an empty one.
    pub value: Option<&'a [u8]>,
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.next >= self.count {
            return None;
        }
        let (mut name, mut value, mut size) = (ptr::null(), ptr::null(), 0);
        // SAFETY: `hdrs` is the live list of `count` headers (non-null whenever `count` > 0) and
        // `next` is below `count`; librdkafka points `name` and `value` into the list.
        let err = unsafe {
            rd::rd_kafka_header_get_all(self.hdrs, self.next, &mut name, &mut value, &mut size)
        };
        self.next += 1;
        // It fails only for an index past the count, which `next` never is: the iterator's
        // length stays exact.
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            self.next = self.count;
            return None;
        }
        // SAFETY: librdkafka's header names are NUL-terminated and live as long as the list.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        // SAFETY: the value, when set, is `size` bytes living as long as the list.
        let value = unsafe { bytes(value.cast(), size) };
        Some(Header { name, value })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Headers<'_> {}

/// `len` bytes at `p`, or `None` for a null pointer.
///
/// # Safety
/// A non-null `p` must point at `len` readable bytes that live for `'a` and are not written.
unsafe fn bytes<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    Some(unsafe { std::slice::from_raw_parts(p, len) })
}
