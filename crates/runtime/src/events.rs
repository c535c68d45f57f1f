//! Everything that reaches the driver thread from elsewhere travels as an [`Event`] on one
//! channel: handler outcomes from tokio tasks, sink deliveries and commit results from
//! librdkafka's threads, the shutdown signal and the control handle's commands. One channel means one place to wait.

use std::sync::mpsc;
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

pub(crate) type EventTx = mpsc::Sender<Event>;
pub(crate) type EventRx = mpsc::Receiver<Event>;
