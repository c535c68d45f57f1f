//! Everything that reaches the driver thread from elsewhere travels as an [`Event`] on one
//! channel: handler outcomes from tokio tasks, sink deliveries and commit results from
//! librdkafka's threads, the shutdown signal and the control handle's commands. One channel means one place to wait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use kafkaesque_engine::{SinkId, TopicPartition, WorkId};

use crate::HandlerError;

#[derive(Debug)]
pub(crate) enum Event {
    Done {
        id: WorkId,
        result: Result<(), HandlerError>,
        elapsed: Duration,
    },
    Delivered {
        id: SinkId,
        offset: i64,
    },
    DeliveryFailed {
        id: SinkId,
        error: String,
    },
    Committed {
        tp: TopicPartition,
        offset: i64,
        ok: bool,
    },
    Shutdown,
    /// A command of the [`Control`](crate::Control) handle.
    Control(crate::command::Command),
}

/// The channel to the driver, with a doorbell.
pub(crate) fn channel() -> (EventTx, EventRx) {
    let (tx, rx) = mpsc::channel();
    let bell = Arc::new(Doorbell::default());
    (
        EventTx {
            tx,
            bell: bell.clone(),
        },
        EventRx { rx, bell },
    )
}

/// Rings the driver awake once enough events wait unread.
///
/// **Why.** While handlers run and Kafka has nothing new, the driver naps (up to a couple of
/// milliseconds) rather than waking for each outcome, so that outcomes are taken in batches.
/// With handlers running as tokio tasks, a consumer whose every slot is taken then idles until
/// the nap ends, with the outcomes that would free its slots already waiting: throughput
/// becomes concurrency per nap. Waking it once a quarter of its slots' worth of events is
/// waiting keeps the batching and ends those idle naps.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    driver: OnceLock<Thread>,
    unread: AtomicUsize,
    ring_at: AtomicUsize,
}

/// Sends events to the driver; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct EventTx {
    tx: mpsc::Sender<Event>,
    bell: Arc<Doorbell>,
}

impl EventTx {
    pub(crate) fn send(&self, event: Event) -> Result<(), mpsc::SendError<Event>> {
        // Counted before it is sent, so that the driver, taking it off at once, never counts
        // below zero.
        let unread = self
            .bell
            .unread
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        if let Err(e) = self.tx.send(event) {
            self.bell.unread.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        if unread == self.bell.ring_at.load(Ordering::Relaxed) {
            if let Some(driver) = self.bell.driver.get() {
                driver.unpark();
            }
        }
        Ok(())
    }
}

/// The driver's end of the channel.
#[derive(Debug)]
pub(crate) struct EventRx {
    rx: mpsc::Receiver<Event>,
    bell: Arc<Doorbell>,
}

impl EventRx {
    /// Makes the calling thread the one the doorbell wakes, once `ring_at` events wait unread.
    pub(crate) fn answer_here(&self, ring_at: usize) {
        let _ = self.bell.driver.set(std::thread::current());
        self.bell.ring_at.store(ring_at.max(1), Ordering::Relaxed);
    }

    pub(crate) fn try_recv(&self) -> Result<Event, mpsc::TryRecvError> {
        let event = self.rx.try_recv()?;
        self.bell.unread.fetch_sub(1, Ordering::AcqRel);
        Ok(event)
    }

    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<Event, mpsc::RecvTimeoutError> {
        let event = self.rx.recv_timeout(timeout)?;
        self.bell.unread.fetch_sub(1, Ordering::AcqRel);
        Ok(event)
    }
}
