//! Commands from the [`Control`](crate::Control) handle, carried out by the driver: pauses
//! (which partitions are paused is decided by [`Pauses`], plain data; the feeds and librdkafka
//! carry it out), new limits, and shutdowns.

use std::collections::HashSet;

use kafkaesque_engine::{Role, TopicPartition};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use tracing::{error, info};

use super::State;
use crate::command::{Command, ShutdownMode, Target};
use crate::error::Error;
use crate::feeds;

/// Which partitions the user has paused: the pauses and resumes asked for, in order, the last
/// that covers a partition deciding; and the partitions paused now, to act on changes only.
#[derive(Debug, Default)]
pub(crate) struct Pauses {
    /// Each entry supersedes the earlier ones it covers, which are dropped.
    rules: Vec<(Target, bool)>,
    applied: HashSet<TopicPartition>,
}

fn covers(target: &Target, tp: &TopicPartition) -> bool {
    match target {
        Target::All => true,
        Target::Topic(t) => *t == *tp.topic,
        Target::Partition(p) => p == tp,
    }
}

/// Whether `wider` covers every partition `narrower` does.
fn subsumes(wider: &Target, narrower: &Target) -> bool {
    match (wider, narrower) {
        (Target::All, _) => true,
        (Target::Topic(a), Target::Topic(b)) => a == b,
        (Target::Topic(a), Target::Partition(p)) => **a == *p.topic,
        (Target::Partition(a), Target::Partition(b)) => a == b,
        _ => false,
    }
}

impl Pauses {
    /// Records a pause (`paused`) or a resume of `target`.
    pub(crate) fn set(&mut self, target: Target, paused: bool) {
        self.rules.retain(|(t, _)| !subsumes(&target, t));
        // Nothing is paused by default: a resume that supersedes every earlier rule says nothing.
        if paused || !self.rules.is_empty() {
            self.rules.push((target, paused));
        }
    }

    /// Whether `tp` is to be paused.
    pub(crate) fn wanted(&self, tp: &TopicPartition) -> bool {
        self.rules
            .iter()
            .rev()
            .find(|(t, _)| covers(t, tp))
            .is_some_and(|(_, paused)| *paused)
    }

    /// Whether `tp` is paused now.
    pub(crate) fn is_paused(&self, tp: &TopicPartition) -> bool {
        self.applied.contains(tp)
    }

    /// A partition was revoked: a pause or resume of it alone is forgotten.
    pub(crate) fn revoked(&mut self, tp: &TopicPartition) {
        self.rules
            .retain(|(t, _)| !matches!(t, Target::Partition(p) if p == tp));
        self.applied.remove(tp);
    }
}

impl State {
    /// Carries out a command of the control handle and answers it.
    pub(crate) fn control<C: ConsumerContext>(&mut self, cmd: Command, main: &BaseConsumer<C>) {
        match cmd {
            Command::Pause(target, paused, reply) => {
                info!(?target, paused, "pause asked for");
                self.pauses.set(target, paused);
                let assigned: Vec<TopicPartition> = self
                    .engine
                    .partition_stats()
                    .into_iter()
                    .filter(|s| s.role == Role::Main)
                    .map(|s| s.tp)
                    .collect();
                for tp in assigned {
                    self.apply_pause(main, &tp);
                }
                let _ = reply.send(Ok(()));
            }
            Command::Limits(mut limits, reply) => {
                // The broker's budget, read at start, is not the user's to change.
                limits.metadata_max_bytes = self.cfg.engine.limits.metadata_max_bytes;
                let result = match self.engine.set_limits(limits.clone()) {
                    Ok(()) => {
                        info!(?limits, "limits changed");
                        self.cfg.engine.limits = limits;
                        Ok(())
                    }
                    Err(e) => Err(Error::config(e.field, e.problem)),
                };
                let _ = reply.send(result);
            }
            Command::Shutdown(mode, reply) => {
                info!(?mode, "shutdown asked for");
                self.begin_shutdown(mode == ShutdownMode::DrainFetched);
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Marks the consumer as shutting down. Unless it is to drain everything fetched, no new
    /// work starts from here on: what finishes meanwhile must not start the next record of its
    /// key.
    pub(crate) fn begin_shutdown(&mut self, drain_fetched: bool) {
        self.shutdown = true;
        self.drain_fetched = drain_fetched;
        if !drain_fetched {
            for h in self.handles() {
                self.engine.drain(h);
            }
        }
    }

    /// Pauses or resumes an assigned partition as the user's pauses want it. A partition with a
    /// queue of its own is simply not taken from meanwhile; any other is paused in librdkafka.
    pub(crate) fn apply_pause<C: ConsumerContext>(
        &mut self,
        main: &BaseConsumer<C>,
        tp: &TopicPartition,
    ) {
        let wanted = self.pauses.wanted(tp);
        if wanted == self.pauses.is_paused(tp) {
            return;
        }
        if wanted {
            self.pauses.applied.insert(tp.clone());
        } else {
            self.pauses.applied.remove(tp);
        }
        match self.feeds.set_paused(tp, wanted) {
            Some(Some(offer)) => self.offer_records(offer, main),
            Some(None) => {}
            None => {
                // No queue of its own: librdkafka pauses it. A partition the engine has paused
                // at its cap stays paused until the engine resumes it.
                let engine_paused = self
                    .engine
                    .handle(tp)
                    .and_then(|h| self.engine.resume_at(h))
                    .is_some();
                let r = if wanted {
                    feeds::pause_in_kafka(main, tp)
                } else if engine_paused {
                    Ok(())
                } else {
                    feeds::resume_in_kafka(main, tp)
                };
                if let Err(e) = r {
                    error!(topic = %tp.topic, partition = tp.partition, wanted, error = %e, "pausing or resuming a partition failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, p: i32) -> TopicPartition {
        TopicPartition::new(topic, p)
    }

    #[test]
    fn the_last_pause_or_resume_that_covers_a_partition_decides() {
        let mut p = Pauses::default();
        assert!(!p.wanted(&tp("a", 0)), "nothing is paused at first");
        p.set(Target::All, true);
        p.set(Target::partition("a", 1), false);
        assert!(p.wanted(&tp("a", 0)));
        assert!(!p.wanted(&tp("a", 1)), "resumed on its own");
        assert!(
            p.wanted(&tp("b", 7)),
            "a partition assigned later is paused too"
        );
        p.set(Target::topic("a"), true);
        assert!(
            p.wanted(&tp("a", 1)),
            "the topic's pause supersedes its partition's resume"
        );
        p.set(Target::All, false);
        assert!(!p.wanted(&tp("a", 0)) && !p.wanted(&tp("b", 7)));
        assert!(p.rules.is_empty(), "resuming everything forgets every rule");
    }

    #[test]
    fn a_revoked_partition_forgets_its_own_pause_but_not_its_topics() {
        let mut p = Pauses::default();
        p.set(Target::partition("a", 0), true);
        p.set(Target::topic("b"), true);
        p.set(Target::partition("b", 1), false);
        p.revoked(&tp("a", 0));
        p.revoked(&tp("b", 1));
        assert!(!p.wanted(&tp("a", 0)), "consumed again if it comes back");
        assert!(p.wanted(&tp("b", 1)), "its topic's pause covers it again");
    }
}
