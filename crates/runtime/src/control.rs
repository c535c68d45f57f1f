//! The control handle: pause and resume, new limits and either kind of shutdown, asked of a
//! running consumer from anywhere (an HTTP endpoint, a signal handler, a test).
//!
//! Why commands and not shared flags: the driver thread owns the engine and the partitions'
//! feeds, and every change to them goes through it. A command travels on the driver's event
//! channel like a handler's outcome does; the driver decides and carries it out between two
//! turns of its loop, then answers. A command sent before [`Consumer::run`](crate::Consumer::run)
//! waits in the channel and is carried out as the consumer starts, before it subscribes: a
//! consumer paused before `run` takes no record until resumed.
//!
//! Each method resolves once the driver has carried the command out. An idle driver looks at
//! its channel at least every 50 ms, so that is about the longest a command waits.

use kafkaesque_engine::Limits;
use tokio::sync::oneshot;

use crate::command::{Command, ShutdownMode, Target};
use crate::error::{Error, Result};
use crate::events::{Event, EventTx};

/// Controls one consumer while it runs. Got from [`Consumer::control`](crate::Consumer::control)
/// before `run`; cheap to clone and send to other tasks and threads.
#[derive(Debug, Clone)]
pub struct Control {
    tx: EventTx,
    /// The limits as last set through this handle or the builder, so that
    /// [`Control::set_concurrency`] changes one field of them.
    limits: std::sync::Arc<std::sync::Mutex<Limits>>,
}

impl Control {
    pub(crate) fn new(tx: EventTx, limits: Limits) -> Self {
        Control {
            tx,
            limits: std::sync::Arc::new(std::sync::Mutex::new(limits)),
        }
    }

    /// Stops taking records of `target` from librdkafka. Records taken in before the pause was
    /// carried out still run, in order; nothing more of the target reaches a handler until it
    /// is resumed. librdkafka keeps fetching until the partition's local queue is full
    /// (`queued.max.messages.kbytes`) and the group membership stays alive.
    ///
    /// A paused partition stays paused across rebalances while this consumer owns it. Once it
    /// is revoked, a pause of that one partition is forgotten: if the group gives it back later,
    /// it is consumed again. Pauses of a topic or of everything also cover partitions assigned
    /// later.
    pub async fn pause(&self, target: Target) -> Result<()> {
        self.ask(|reply| Command::Pause(target, true, reply)).await
    }

    /// Ends a pause made with [`Control::pause`]. Resuming a partition paused as part of its
    /// topic (or of everything) resumes that partition alone; resuming everything ends every
    /// pause. Records the engine holds back by its own limits stay held until the limits allow.
    pub async fn resume(&self, target: Target) -> Result<()> {
        self.ask(|reply| Command::Pause(target, false, reply)).await
    }

    /// Replaces the memory caps and the concurrency (`max_in_flight`) while running. Checked
    /// as the builder checks them; refused with [`Error::Config`] naming the field, leaving the
    /// limits as they were. `metadata_max_bytes` is the broker's and is kept as the consumer
    /// read it. Lowered caps admit nothing new until holdings are below them; raised caps
    /// resume what they no longer justify pausing.
    pub async fn set_limits(&self, limits: Limits) -> Result<()> {
        let sent = limits.clone();
        self.ask(|reply| Command::Limits(sent, reply)).await?;
        *self.limits.lock().expect("limits lock") = limits;
        Ok(())
    }

    /// Changes only the concurrency: handlers running at once across all partitions.
    pub async fn set_concurrency(&self, n: usize) -> Result<()> {
        let limits = Limits {
            max_in_flight: n,
            ..self.limits.lock().expect("limits lock").clone()
        };
        self.set_limits(limits).await
    }

    /// Asks for a shutdown of the given kind. Resolves once the driver has started it; `run`
    /// returns when it is over.
    pub async fn shutdown(&self, mode: ShutdownMode) -> Result<()> {
        self.ask(|reply| Command::Shutdown(mode, reply)).await
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<()>>) -> Command,
    ) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Event::Control(command(reply)))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Driver("the consumer has stopped; the command was not carried out".into())
}
