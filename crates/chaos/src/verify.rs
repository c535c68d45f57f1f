//! The checks, from PostgreSQL: every acknowledged update applied, each row's final state its
//! last acknowledged update, no row's applied sequence ever going backwards, and how many
//! updates were applied more than once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use crate::history::Write;
use crate::traffic::{Sent, Subscription};
use crate::Result;

/// A row as the run reads it at the end: its `seq` tag and which `s<n>` marks it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub seq: Option<u64>,
    pub marks: HashSet<u64>,
}

/// Reads the rows of `ids`.
pub async fn rows(db: &tokio_postgres::Client, ids: &[Uuid]) -> Result<HashMap<Uuid, Row>> {
    let found = db
        .query("SELECT id, tags FROM players WHERE id = ANY($1)", &[&ids])
        .await?;
    let mut rows = HashMap::new();
    for r in found {
        let tags: Value = r.get(1);
        let seq = tags["seq"].as_str().and_then(|s| s.parse().ok());
        let marks = tags
            .as_object()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.strip_prefix('s')?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        rows.insert(r.get(0), Row { seq, marks });
    }
    Ok(rows)
}

/// Polls until every row's `seq` is its last acknowledged update or `limit` passes; how long
/// it took, or `None` if the consumers did not catch up in time.
pub async fn catch_up(
    url: &str,
    ledger: &[(Subscription, Sent)],
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let ids: Vec<Uuid> = ledger.iter().map(|(s, _)| s.id).collect();
    while started.elapsed() < limit {
        // A fresh connection each time: PostgreSQL may have been down a moment ago.
        if let Ok(db) = crate::postgres::connect(url).await {
            if let Ok(found) = rows(&db, &ids).await {
                // An abandoned update may have reached the topic after all: then it is the last.
                let done = ledger.iter().all(|(s, sent)| {
                    let seq = found.get(&s.id).and_then(|r| r.seq);
                    seq == Some(sent.last_acked) || (seq.is_some() && seq == sent.abandoned)
                });
                if done {
                    return Some(started.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// What the checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks {
    /// Updates answered 200.
    pub acknowledged: u64,
    /// Acknowledged updates whose mark is in their row.
    pub applied: u64,
    /// Acknowledged updates whose mark is not.
    pub lost: u64,
    /// Rows whose final `seq` is not their last acknowledged update (or that do not exist).
    pub wrong_final: u64,
    /// Writes that set a row's `seq` below the one before.
    pub order_violations: u64,
    /// Writes that set a row's `seq` to a value it had already been given by an earlier write.
    pub applied_twice: u64,
    /// Of those, the ones no re-send by the client explains.
    pub applied_twice_unexplained: u64,
    /// The most writes committed in one second: the consumers' pace, for the duplicate bound.
    pub peak_writes_per_second: u64,
    /// The longest time without any write while traffic was flowing: when it began and how long
    /// it lasted, in milliseconds from the start of the traffic. A stalled consumer group (after
    /// a broker restart, say) shows here even when it catches up in the end.
    pub longest_stall_ms: (i64, i64),
    /// Updates the API refused (never expected).
    pub refused: u64,
    /// Updates the API still failed to write a minute after the traffic stopped.
    pub abandoned: u64,
}

/// Judges the end state and the history against the ledger; `traffic` is when the traffic
/// began and ended, in milliseconds since the Unix epoch.
pub fn judge(
    ledger: &[(Subscription, Sent)],
    rows: &HashMap<Uuid, Row>,
    history: &HashMap<Uuid, Vec<Write>>,
    traffic: (i64, i64),
) -> Checks {
    let mut c = Checks::default();
    for (sub, sent) in ledger {
        c.acknowledged += sent.last_acked;
        c.refused += sent.refused.len() as u64;
        c.abandoned += u64::from(sent.abandoned.is_some());
        let row = rows.get(&sub.id).cloned().unwrap_or_default();
        let refused: HashSet<u64> = sent.refused.iter().map(|r| r.0).collect();
        let applied = (1..=sent.last_acked)
            .filter(|n| !refused.contains(n) && row.marks.contains(n))
            .count() as u64;
        c.acknowledged -= refused.iter().filter(|n| **n <= sent.last_acked).count() as u64;
        c.applied += applied;
        if row.seq != Some(sent.last_acked) {
            c.wrong_final += 1;
        }
        let writes = history.get(&sub.id).map(Vec::as_slice).unwrap_or_default();
        let mut seen: HashMap<i64, u32> = HashMap::new();
        for (i, w) in writes.iter().enumerate() {
            if i > 0 && w.seq < writes[i - 1].seq {
                c.order_violations += 1;
            }
            *seen.entry(w.seq).or_default() += 1;
        }
        for (seq, times) in seen {
            let extra = u64::from(times - 1);
            let explained = u64::try_from(seq)
                .ok()
                .and_then(|n| sent.resends.get(&n))
                .map_or(0, |r| u64::from(*r));
            c.applied_twice += extra;
            c.applied_twice_unexplained += extra.saturating_sub(explained);
        }
    }
    c.lost = c.acknowledged - c.applied;
    let mut per_second: HashMap<i64, u64> = HashMap::new();
    for w in history.values().flatten() {
        *per_second.entry(w.at_ms / 1000).or_default() += 1;
    }
    c.peak_writes_per_second = per_second.values().copied().max().unwrap_or(0);
    c.longest_stall_ms = longest_stall(history, traffic);
    c
}

fn longest_stall(history: &HashMap<Uuid, Vec<Write>>, (start, end): (i64, i64)) -> (i64, i64) {
    let mut times: Vec<i64> = history
        .values()
        .flatten()
        .map(|w| w.at_ms)
        .filter(|t| (start..=end).contains(t))
        .collect();
    times.push(start);
    times.push(end);
    times.sort_unstable();
    times
        .windows(2)
        .map(|w| (w[0] - start, w[1] - w[0]))
        .max_by_key(|(_, gap)| *gap)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> Subscription {
        Subscription {
            app: Uuid::new_v4(),
            id: Uuid::new_v4(),
            key: String::new(),
        }
    }

    fn w(seq: i64, at_ms: i64) -> Write {
        Write { seq, at_ms }
    }

    #[test]
    fn a_clean_history_passes_and_counts_resent_duplicates_as_explained() {
        let s = sub();
        let mut sent = Sent {
            last_acked: 3,
            ..Sent::default()
        };
        sent.resends.insert(2, 1);
        let row = Row {
            seq: Some(3),
            marks: [1, 2, 3].into(),
        };
        let history = [(
            s.id,
            vec![w(0, 0), w(1, 10), w(2, 20), w(2, 30), w(3, 1500)],
        )];
        let c = judge(
            &[(s.clone(), sent)],
            &[(s.id, row)].into(),
            &history.into(),
            (0, 5000),
        );
        assert_eq!(
            (c.acknowledged, c.applied, c.lost, c.wrong_final),
            (3, 3, 0, 0)
        );
        assert_eq!((c.order_violations, c.applied_twice), (0, 1));
        assert_eq!(c.applied_twice_unexplained, 0);
        assert_eq!(c.peak_writes_per_second, 4);
        assert_eq!(
            c.longest_stall_ms,
            (1500, 3500),
            "from the last write to the end"
        );
    }

    #[test]
    fn a_lost_update_a_step_back_and_an_unexplained_duplicate_are_all_caught() {
        let s = sub();
        let sent = Sent {
            last_acked: 4,
            abandoned: Some(5),
            ..Sent::default()
        };
        let row = Row {
            seq: Some(3),
            marks: [1, 2, 3].into(),
        };
        let history = [(s.id, vec![w(0, 0), w(2, 1), w(1, 2), w(2, 3), w(3, 4)])];
        let c = judge(
            &[(s.clone(), sent)],
            &[(s.id, row)].into(),
            &history.into(),
            (0, 5000),
        );
        assert_eq!((c.lost, c.wrong_final, c.order_violations), (1, 1, 1));
        assert_eq!((c.applied_twice, c.applied_twice_unexplained), (1, 1));
        assert_eq!(c.abandoned, 1);
    }
}
