//! A message lent by the queue, and its headers.

use std::ffi::{c_void, CStr};
use std::fmt;
use std::ptr::{self, NonNull};

use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Timestamp;

/// A record read from a [`Taken`](crate::Taken) (see [`Taken::iter`](crate::Taken::iter)).
pub struct Message<'a> {
    /// Kept as librdkafka's pointer (not a reference) for the calls that read more of it.
    ptr: NonNull<rd::rd_kafka_message_t>,
    /// Its headers, parsed when it was taken; null when it has none.
    hdrs: *const rd::rd_kafka_headers_t,
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl<'a> Message<'a> {
    /// A record, or the error librdkafka queued in its place.
    ///
    /// # Safety
    /// `ptr` must be a message from librdkafka that is not destroyed during `'a`, and `hdrs`
    /// its header list from `rd_kafka_message_headers`, or null.
    pub(crate) unsafe fn read(
        ptr: NonNull<rd::rd_kafka_message_t>,
        hdrs: *const rd::rd_kafka_headers_t,
    ) -> Result<Self, KafkaError> {
        // SAFETY: the caller's promise; the public fields are only read.
        let m = unsafe { ptr.as_ref() };
        match m.err {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {}
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                return Err(KafkaError::PartitionEOF(m.partition));
            }
            e => return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(e))),
        }
        Ok(Message {
            ptr,
            hdrs,
            partition: m.partition,
            offset: m.offset,
            // SAFETY: librdkafka's key and payload pointers, when set, point at `key_len` and
            // `len` bytes that live as long as the message.
            key: unsafe { bytes(m.key, m.key_len) },
            // SAFETY: as for the key.
            payload: unsafe { bytes(m.payload, m.len) },
        })
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn offset(&self) -> i64 {
        self.offset
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    pub fn payload(&self) -> Option<&'a [u8]> {
        self.payload
    }

    pub fn timestamp(&self) -> Timestamp {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live and `kind` a valid place to write the type to.
        let t = unsafe { rd::rd_kafka_message_timestamp(self.ptr.as_ptr(), &mut kind) };
        match kind {
            rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE => {
                Timestamp::NotAvailable
            }
            rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_CREATE_TIME => {
                Timestamp::CreateTime(t)
            }
            rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => {
                Timestamp::LogAppendTime(t)
            }
        }
    }

    /// The record's headers, in order (parsed by librdkafka when the message was taken).
    pub fn headers(&self) -> Headers<'a> {
        let count = if self.hdrs.is_null() {
            0
        } else {
            // SAFETY: `hdrs` is the message's live header list.
            unsafe { rd::rd_kafka_header_cnt(self.hdrs) }
        };
        Headers {
            hdrs: self.hdrs,
            next: 0,
            count,
            _message: std::marker::PhantomData,
        }
    }
}

/// A message's headers; see [`Message::headers`].
pub struct Headers<'a> {
    hdrs: *const rd::rd_kafka_headers_t,
    next: usize,
    count: usize,
    _message: std::marker::PhantomData<&'a rd::rd_kafka_message_t>,
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
    pub name: &'a [u8],
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
        let value = unsafe { bytes(value.cast_mut(), size) };
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
unsafe fn bytes<'a>(p: *mut c_void, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    Some(unsafe { std::slice::from_raw_parts(p as *const u8, len) })
}
