//! The verdict: one table of what was sent, applied, lost, reordered and duplicated, what was
//! done to the service, and whether the run passed.
//!
//! **The duplicate bound.** The service is at least once: after a consumer dies or the group
//! moves partitions without a clean hand-over, the new owner starts again from the last commit,
//! and changes applied since then reach a handler a second time. The replay rule (a row keeps
//! the offset of its newest change) makes those second deliveries write nothing, so a change
//! *applied* twice is always a violation unless the client itself sent it twice. The deliveries
//! repeated are bounded per disruption by the in-flight window: what the group can have running
//! (its concurrency) plus what it completes between two commits (commits are every second; two
//! seconds at the peak pace the history shows). Bound = disruptions × window.

use std::fmt;
use std::time::Duration;

use crate::logs::Totals;
use crate::ownership::Unowned;
use crate::service::Crash;
use crate::verify::Checks;

/// How much longer than the longest outage a pause in writes may last: a dead member is noticed
/// after the 6 s session timeout, a dead broker fenced after 9 s, a reconnect takes a few more.
pub const STALL_MARGIN: Duration = Duration::from_secs(30);

/// A broker fault aimed at the leader of the busiest partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub node: u32,
    pub partition: i32,
    /// Frozen this long, or from the SIGKILL until the node answered again.
    pub took: Duration,
}

/// Everything the run measured.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub mode: &'static str,
    pub seed: u64,
    pub took: Duration,
    /// HTTP requests made, re-sends included.
    pub sent: u64,
    pub resent: u64,
    /// Of the re-sends, those after a 503 (the API could not write to Kafka: a leader gone, say).
    pub resent_after_503: u64,
    /// Nodes of the run's Kafka cluster.
    pub brokers: u32,
    pub checks: Checks,
    pub logs: Totals,
    /// Handlers running at once, summed over the most consumers the group had.
    pub group_concurrency: u64,
    pub kills: u32,
    pub joins: u32,
    pub leaves: u32,
    pub broker_freeze: Option<Hit>,
    pub broker_restarts: u32,
    /// From the SIGTERM of every node to all of them answering again.
    pub broker_restart_took: Option<Duration>,
    pub leader_kills: Vec<Hit>,
    /// Each node's turn of the rolling restart, from its SIGTERM to its replicas in sync.
    pub rolling_restart: Vec<Duration>,
    /// The longest time a partition had no owner in the group.
    pub unowned: Option<Unowned>,
    pub database_outage: Option<Duration>,
    /// How long the consumers took to apply everything after the traffic stopped.
    pub caught_up: Option<Duration>,
    pub crashes: Vec<Crash>,
    /// Things a reader should know that are not violations.
    pub notes: Vec<String>,
}

impl Verdict {
    /// Faults after which a new owner may replay changes (each node of a rolling restart is
    /// one: its leaderships and perhaps the group's coordinator move).
    pub fn disruptions(&self) -> u64 {
        u64::from(self.kills + self.joins + self.leaves + self.broker_restarts)
            + u64::from(self.broker_freeze.is_some())
            + self.leader_kills.len() as u64
            + self.rolling_restart.len() as u64
            + self.crashes.len() as u64
    }

    /// The in-flight window of one disruption (see the module's doc).
    pub fn window(&self) -> u64 {
        self.group_concurrency + 2 * self.checks.peak_writes_per_second
    }

    pub fn duplicate_bound(&self) -> u64 {
        self.disruptions() * self.window()
    }

    /// Every broken promise, in words; empty when the run passed.
    pub fn violations(&self) -> Vec<String> {
        let c = &self.checks;
        let mut v = Vec::new();
        if self.caught_up.is_none() {
            v.push("the consumers did not catch up in time".to_owned());
        }
        for (n, what) in [
            (c.lost, "acknowledged updates lost"),
            (
                c.wrong_final,
                "rows whose final state is not their last acknowledged update",
            ),
            (
                c.order_violations,
                "writes that set a row's sequence backwards",
            ),
            (
                c.applied_twice_unexplained,
                "updates applied twice without a client re-send",
            ),
            (c.refused, "valid updates refused by the API"),
            (
                c.abandoned,
                "updates the API still could not write a minute after the traffic stopped",
            ),
            (
                self.logs.dead_lettered,
                "records dead-lettered by the consumers",
            ),
        ] {
            if n > 0 {
                v.push(format!("{n} {what}"));
            }
        }
        if self.logs.replayed > self.duplicate_bound() {
            v.push(format!(
                "{} replayed deliveries exceed the bound of {}",
                self.logs.replayed,
                self.duplicate_bound()
            ));
        }
        let stall = Duration::from_millis(c.longest_stall_ms.1.max(0) as u64);
        if stall > self.stall_limit() {
            v.push(format!(
                "no write for {:.1} s (from {:.1} s into the traffic), longer than {:?}",
                stall.as_secs_f64(),
                c.longest_stall_ms.0 as f64 / 1000.0,
                self.stall_limit()
            ));
        }
        for crash in &self.crashes {
            v.push(format!("{} ended on its own: {}", crash.name, crash.how));
        }
        v
    }

    /// The longest pause in writes the run accepts: the longest outage it caused, plus
    /// [`STALL_MARGIN`] for the group to notice and recover.
    pub fn stall_limit(&self) -> Duration {
        let outages = [
            self.broker_freeze.map(|h| h.took),
            self.database_outage,
            self.broker_restart_took,
            self.leader_kills.iter().map(|h| h.took).max(),
            self.rolling_restart.iter().copied().max(),
        ];
        outages.into_iter().flatten().max().unwrap_or_default() + STALL_MARGIN
    }

    pub fn passed(&self) -> bool {
        self.violations().is_empty()
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.checks;
        let restarts = format!(
            "{} ({})",
            self.broker_restarts,
            secs(self.broker_restart_took)
        );
        let freeze = self.broker_freeze.map_or_else(
            || "-".to_owned(),
            |h| format!("{} (node {})", secs(Some(h.took)), h.node),
        );
        let leader_kills = match self.leader_kills.as_slice() {
            [] => "-".to_owned(),
            hits => {
                let each: Vec<String> = hits
                    .iter()
                    .map(|h| format!("node {} back after {}", h.node, secs(Some(h.took))))
                    .collect();
                format!("{} ({})", hits.len(), each.join(", "))
            }
        };
        let rolling = match self.rolling_restart.as_slice() {
            [] => "-".to_owned(),
            steps => format!(
                "{} nodes in {} (longest {})",
                steps.len(),
                secs(Some(steps.iter().sum())),
                secs(steps.iter().copied().max())
            ),
        };
        let unowned = self.unowned.as_ref().map_or_else(
            || "-".to_owned(),
            |u| {
                format!(
                    "{:.1} s (partition {}, from {:.1} s into the traffic)",
                    u.ms as f64 / 1000.0,
                    u.partition,
                    u.from_ms as f64 / 1000.0
                )
            },
        );
        let rows: Vec<(&str, String)> = vec![
            (
                "run",
                format!(
                    "{} (seed {}), {:.0} s",
                    self.mode,
                    self.seed,
                    self.took.as_secs_f64()
                ),
            ),
            ("broker nodes", self.brokers.to_string()),
            (
                "updates sent (requests)",
                format!("{} ({} re-sent)", self.sent, self.resent),
            ),
            ("re-sent after a 503", self.resent_after_503.to_string()),
            ("acknowledged", c.acknowledged.to_string()),
            ("never acknowledged (given up)", c.abandoned.to_string()),
            ("applied", c.applied.to_string()),
            ("lost", c.lost.to_string()),
            (
                "final state != last acknowledged",
                c.wrong_final.to_string(),
            ),
            ("order violations", c.order_violations.to_string()),
            (
                "applied twice (client re-sends)",
                format!(
                    "{} ({} unexplained)",
                    c.applied_twice, c.applied_twice_unexplained
                ),
            ),
            (
                "duplicate deliveries (replays skipped)",
                format!(
                    "{} of {} deliveries",
                    self.logs.replayed, self.logs.deliveries
                ),
            ),
            (
                "duplicate bound",
                format!(
                    "{} = {} disruptions x window {}",
                    self.duplicate_bound(),
                    self.disruptions(),
                    self.window()
                ),
            ),
            ("consumer kills (SIGKILL)", self.kills.to_string()),
            (
                "joins / leaves",
                format!("{} / {}", self.joins, self.leaves),
            ),
            (
                "rebalances (assignments / lost)",
                format!("{} / {}", self.logs.assignments, self.logs.lost_assignments),
            ),
            ("longest partition without owner", unowned),
            ("broker freeze (SIGSTOP of a leader)", freeze),
            ("broker restarts (all nodes)", restarts),
            ("leader kills (SIGKILL)", leader_kills),
            ("rolling restart", rolling),
            ("database outage", secs(self.database_outage)),
            ("catch-up after traffic", secs(self.caught_up)),
            (
                "longest pause in writes",
                format!(
                    "{:.1} s (from {:.1} s into the traffic)",
                    c.longest_stall_ms.1 as f64 / 1000.0,
                    c.longest_stall_ms.0 as f64 / 1000.0
                ),
            ),
            ("dead-lettered", self.logs.dead_lettered.to_string()),
            ("crashes", self.crashes.len().to_string()),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        writeln!(f, "{:-<w$}", "", w = width + 40)?;
        for (k, v) in rows {
            writeln!(f, "{k:<width$}  {v}")?;
        }
        writeln!(f, "{:-<w$}", "", w = width + 40)?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        for crash in &self.crashes {
            writeln!(
                f,
                "crash: {} ({}), log {}:\n{}",
                crash.name,
                crash.how,
                crash.log.display(),
                crash.tail
            )?;
        }
        let violations = self.violations();
        if violations.is_empty() {
            writeln!(f, "PASSED")
        } else {
            for v in violations {
                writeln!(f, "VIOLATION: {v}")?;
            }
            writeln!(f, "FAILED")
        }
    }
}
