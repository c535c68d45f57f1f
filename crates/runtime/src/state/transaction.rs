//! Exactly-once mode ([`ConsumerBuilder::exactly_once`](crate::ConsumerBuilder::exactly_once)):
//! the consumer's producer is transactional, and a transaction holds everything written since
//! the last one — handlers' outputs, dead letters, diverted records — together with the consumed
//! offsets and their commit metadata (`send_offsets_to_transaction`, with the group metadata of
//! the consumer that owns them, so a member fenced out of the group cannot commit).
//!
//! Why a transaction waits for the work in flight: an output is in the transaction from the
//! moment it is sent, but its source record counts in the offsets only once it completes. A
//! commit while a record's outputs were sent and the record was not yet complete would make the
//! outputs visible while the offsets say the record is still to do, and its next owner would
//! produce them again. So a commit holds back new work (nothing is dispatched, nothing sent to a
//! sink), lets what is in flight finish and be acknowledged, and then commits the engine's
//! offsets: every output in the transaction then belongs to a record those offsets call done,
//! whether below the watermark or above it in the metadata, and a new owner skips exactly those
//! records. Records that did not complete have nothing in the transaction.
//!
//! A transaction that cannot commit (the producer was fenced, a write failed, the group moved
//! on, or work did not finish before a revoke or the shutdown) is aborted, and the consumer
//! stops with [`Error::Transaction`]: its engine counts records as done whose outputs the abort
//! discarded, so it may not go on. A restarted consumer resumes from the last committed
//! transaction.

use std::time::{Duration, Instant};

use kafkaesque_engine::Commit;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::Producer;
use tracing::{debug, error, warn};

use super::commit::offset_list;
use super::State;
use crate::config::ConsumerConfig;
use crate::{Error, Result};

/// How long one transactional call (init, offsets, commit, abort) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls that fail with a retriable error (a coordinator moving, a timeout) are tried this many
/// times.
const ATTEMPTS: u32 = 3;

/// The producer's `transactional.id`: one per consumer instance (see
/// [`ConsumerBuilder::exactly_once`](crate::ConsumerBuilder::exactly_once)).
pub(crate) fn transactional_id(cfg: &ConsumerConfig) -> Option<String> {
    if !cfg.exactly_once {
        return None;
    }
    let instance = cfg
        .properties
        .iter()
        .rev()
        .find(|(k, _)| k == "group.instance.id")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            format!("{}-{nanos:x}", std::process::id())
        });
    Some(format!("kafkaesque.{}.{instance}", cfg.group_id))
}

impl State {
    /// Readies the transactional producer and opens the first transaction. On the driver
    /// thread, before it subscribes: `init_transactions` also aborts an open transaction a
    /// predecessor with the same `transactional.id` left behind.
    pub(crate) fn start_transactions(&self) -> Result<()> {
        if !self.cfg.exactly_once {
            return Ok(());
        }
        let p = self.sinks.producer();
        retried(|| p.init_transactions(CALL_TIMEOUT))
            .map_err(Error::kafka("initialising transactions"))?;
        p.begin_transaction()
            .map_err(Error::kafka("beginning a transaction"))
    }

    /// Commits the open transaction with the engine's offsets (and `last`, the final commits of
    /// revoked partitions or of the shutdown), then opens the next. Holds new work back until
    /// what is in flight has finished (see the module documentation), for at most the drain
    /// timeout. Past it, a periodic commit (`last` false) is left for the next interval; a
    /// final one aborts.
    pub(crate) fn commit_transaction<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        last: Vec<Commit>,
        is_final: bool,
    ) {
        if self.fatal.is_some() {
            return;
        }
        let started = Instant::now();
        self.holding = true;
        let quiet = self.drain_until(main, started + self.cfg.drain_timeout, |s| {
            s.waiting == 0 && s.sinks.pending() == 0
        });
        if !quiet {
            self.holding = false;
            if is_final {
                self.abort("work in flight did not finish within the drain timeout");
            } else {
                debug!(
                    "transaction left open: work in flight did not finish within the drain timeout"
                );
            }
            return;
        }
        // A partition's newest commit wins: `last` may hold one the engine returns again.
        let mut commits = last;
        for c in self.engine.commits() {
            commits.retain(|o| o.tp != c.tp);
            commits.push(c);
        }
        let result = self.send_transaction(main, &commits);
        self.holding = false;
        match result {
            Ok(()) => {
                for c in &commits {
                    self.engine.committed(c.partition, c.offset);
                }
                metrics::counter!("kafkaesque_transactions_total", self.labels()).increment(1);
                metrics::histogram!("kafkaesque_transaction_seconds", self.labels())
                    .record(started.elapsed().as_secs_f64());
            }
            Err(e) => self.abort(&e),
        }
        self.run_actions(main);
    }

    /// Sends the offsets of `commits` to the transaction (the overflow partitions' with the
    /// overflow consumer's group), commits it, and opens the next.
    fn send_transaction<C: ConsumerContext>(
        &self,
        main: &BaseConsumer<C>,
        commits: &[Commit],
    ) -> std::result::Result<(), String> {
        let p = self.sinks.producer();
        let [(primary, _), (overflow, _)] = self.by_consumer(commits.to_vec());
        let groups = [
            (primary, main.group_metadata()),
            (
                overflow,
                self.overflow.as_ref().and_then(|c| c.group_metadata()),
            ),
        ];
        for (list, group) in groups {
            if list.is_empty() {
                continue;
            }
            if list.iter().any(|c| c.truncated_from.is_some()) {
                warn!("commit metadata truncated in exactly-once mode: records completed above the watermark that it has no room for will run again after a restart, and their outputs appear twice");
            }
            let group = group.ok_or("the consumer has no group metadata")?;
            let tpl = offset_list(&list);
            retried(|| p.send_offsets_to_transaction(&tpl, &group, CALL_TIMEOUT))
                .map_err(|e| format!("sending offsets: {e}"))?;
        }
        retried(|| p.commit_transaction(CALL_TIMEOUT)).map_err(|e| format!("committing: {e}"))?;
        p.begin_transaction()
            .map_err(|e| format!("beginning the next transaction: {e}"))
    }

    /// Aborts the open transaction and stops the consumer (see the module documentation).
    pub(crate) fn abort(&mut self, reason: &str) {
        error!(%reason, "exactly-once: aborting the transaction and stopping the consumer; a restart resumes from the last committed transaction");
        metrics::counter!("kafkaesque_transaction_aborts_total", self.labels()).increment(1);
        if let Err(e) = self.sinks.producer().abort_transaction(CALL_TIMEOUT) {
            warn!(error = %e, "aborting the transaction failed (the broker aborts it when it times out)");
        }
        self.fatal = Some(reason.to_owned());
    }
}

/// Runs a transactional call, again while it fails with a retriable error.
fn retried(mut call: impl FnMut() -> KafkaResult<()>) -> KafkaResult<()> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && attempt < ATTEMPTS => {
                warn!(error = %e, attempt, "transactional call failed; retrying");
                attempt += 1;
            }
            r => return r,
        }
    }
}
