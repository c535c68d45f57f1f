//! Commits: asynchronous on the interval, synchronous and retried on revoke and shutdown, each
//! carrying the engine's metadata; overflow partitions commit through their own consumer.

use std::time::{Duration, Instant};

use kafkaesque_engine::Commit;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, error, warn};

use super::State;

/// How long a final commit (revoke, shutdown) is retried before the owner gives up on it.
const FINAL_COMMIT_BUDGET: Duration = Duration::from_secs(5);

impl State {
    /// Commits what the engine releases, asynchronously (on the interval). A failure is logged
    /// and the engine returns the same commit next time.
    pub(crate) fn commit<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        commits: Vec<Commit>,
    ) {
        if self.cfg.exactly_once {
            // Taken again once the transaction's work has finished (see `transaction.rs`).
            for c in &commits {
                self.engine.commit_failed(c.partition);
            }
            if !commits.is_empty() {
                self.commit_transaction(main, Vec::new(), false);
            }
            return;
        }
        for (list, overflow) in self.by_consumer(commits) {
            if let Err(e) = self.send_commit(main, &list, overflow, CommitMode::Async) {
                warn!(error = %e, partitions = list.len(), "commit failed; will retry");
                metrics::counter!("kafkaesque_commit_failures_total", self.labels()).increment(1);
                for c in &list {
                    self.engine.commit_failed(c.partition);
                }
            }
        }
    }

    /// Commits synchronously (revoke, shutdown), retrying a failed commit for up to
    /// [`FINAL_COMMIT_BUDGET`]: these are the last chance to record this owner's progress, and
    /// a coordinator that times out a few requests in a row (a broker restarting, a loaded
    /// machine) would otherwise cost the next owner a replay of everything since the last
    /// periodic commit.
    pub(crate) fn commit_final<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        commits: Vec<Commit>,
    ) {
        if self.cfg.exactly_once {
            self.commit_transaction(main, commits, true);
            return;
        }
        for (list, overflow) in self.by_consumer(commits) {
            let started = Instant::now();
            let mut attempt = 1;
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.send_commit(main, &list, overflow, CommitMode::Sync) {
                    Ok(()) => {
                        for c in &list {
                            self.engine.committed(c.partition, c.offset);
                        }
                        break;
                    }
                    Err(e) if started.elapsed() + backoff < FINAL_COMMIT_BUDGET => {
                        warn!(error = %e, attempt, "final commit failed; retrying");
                        metrics::counter!("kafkaesque_commit_failures_total", self.labels())
                            .increment(1);
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        attempt += 1;
                    }
                    Err(e) => {
                        error!(error = %e, partitions = list.len(), "final commit failed; the next owner will replay from the last commit");
                        break;
                    }
                }
            }
        }
    }

    /// The commits of the group consumer, and those of the overflow consumer.
    pub(super) fn by_consumer(&self, commits: Vec<Commit>) -> [(Vec<Commit>, bool); 2] {
        let (ovf, primary): (Vec<Commit>, Vec<Commit>) = commits
            .into_iter()
            .partition(|c| self.is_overflow(&c.tp.topic));
        [(primary, false), (ovf, true)]
    }

    fn send_commit<C: ConsumerContext>(
        &self,
        main: &BaseConsumer<C>,
        list: &[Commit],
        overflow: bool,
        mode: CommitMode,
    ) -> rdkafka::error::KafkaResult<()> {
        if list.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let tpl = offset_list(list);
        let result = match (overflow, self.overflow.as_ref()) {
            (true, Some(o)) => o.commit(&tpl, mode),
            (true, None) => Ok(()),
            (false, _) => main.commit(&tpl, mode),
        };
        metrics::counter!("kafkaesque_commits_total", self.labels()).increment(1);
        metrics::histogram!("kafkaesque_commit_seconds", self.labels())
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// The offsets and metadata of `list`, as Kafka takes them.
pub(super) fn offset_list(list: &[Commit]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for c in list {
        if c.truncated_from.is_some() {
            debug!(topic = %c.tp.topic, partition = c.tp.partition, "commit metadata truncated; some completed records will be replayed after a restart");
        }
        let added = tpl.add_partition_offset(&c.tp.topic, c.tp.partition, Offset::Offset(c.offset));
        if let (Ok(()), Some(mut elem)) = (added, tpl.find_partition(&c.tp.topic, c.tp.partition)) {
            elem.set_metadata(c.metadata.clone());
        }
    }
    tpl
}
