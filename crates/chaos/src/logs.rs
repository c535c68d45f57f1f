//! What the consumers' JSON logs tell: how often partitions were assigned (the rebalances each
//! process took part in) and how many changes reached a handler again after they had been
//! applied (replays, which the replay rule skipped — the consumer-side duplicates).
//!
//! The consumers run with `kafkaesque_subscribers::apply=debug`, so every delivery logs an
//! `applied` line with its `replayed` count. A killed process's log ends wherever it was killed;
//! Rust writes stdout line by line, so no whole line is lost.

use std::path::PathBuf;

use serde_json::Value;

/// The log filter the consumers run with.
pub const FILTER: &str = "info,kafkaesque_subscribers::apply=debug";

/// Totals over every consumer log of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Deliveries applied.
    pub deliveries: u64,
    /// Changes delivered again after they had been applied (skipped by the replay rule).
    pub replayed: u64,
    /// Times a process was assigned partitions (its link cache loaded).
    pub assignments: u64,
    /// Partitions lost without a clean revoke (the group moved on without the process).
    pub lost_assignments: u64,
    /// Records sent to the dead-letter topic. The run's traffic is all valid, so any is an
    /// update given up on — during a database outage, say, which must be retried instead.
    pub dead_lettered: u64,
}

/// Reads every log.
pub fn read(logs: &[PathBuf]) -> Totals {
    let mut t = Totals::default();
    for path in logs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            add(&mut t, line);
        }
    }
    t
}

fn add(t: &mut Totals, line: &str) {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return;
    };
    let fields = &v["fields"];
    match fields["message"].as_str() {
        Some("applied") => {
            t.deliveries += 1;
            t.replayed += fields["replayed"].as_u64().unwrap_or(0);
        }
        Some("link cache loaded") => t.assignments += 1,
        Some("dead-lettering record") => t.dead_lettered += 1,
        Some(m) if m.starts_with("assignment lost") => t.lost_assignments += 1,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_deliveries_replays_and_assignments_from_json_lines() {
        let mut t = Totals::default();
        for line in [
            r#"{"level":"DEBUG","fields":{"message":"applied","created":false,"replayed":2}}"#,
            r#"{"level":"DEBUG","fields":{"message":"applied","created":true,"replayed":0}}"#,
            r#"{"level":"INFO","fields":{"message":"link cache loaded","links":0}}"#,
            r#"{"level":"WARN","fields":{"message":"assignment lost: final commits skipped (the group has moved on)"}}"#,
            r#"{"level":"WARN","fields":{"message":"dead-lettering record","reason":"invalid"}}"#,
            "not json",
        ] {
            add(&mut t, line);
        }
        let want = Totals {
            deliveries: 2,
            replayed: 2,
            assignments: 1,
            lost_assignments: 1,
            dead_lettered: 1,
        };
        assert_eq!(t, want);
    }
}
