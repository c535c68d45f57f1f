//! Consumer lag over time, computed from what was produced and what was committed.
//!
//! Not from the broker's watermarks: the local broker answers ListOffsets(latest) wrongly for
//! multi-record batches (see `docs/consumer.md`). We know every record's partition, offset and
//! send time from the producer's delivery reports, and sample the group's committed offsets; lag
//! at time *t* is, summed over partitions, the records acknowledged by *t* at or above the
//! committed offset — in messages — and the age of the oldest of them — in seconds.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// One record of the measured traffic, as the producer reported it.
#[derive(Debug, Clone, Copy)]
pub struct Produced {
    pub partition: i32,
    pub offset: i64,
    /// When it was sent, and when the broker acknowledged it (ms since the epoch).
    pub sent_ms: i64,
    pub acked_ms: i64,
}

/// The group's committed offset per partition at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at_ms: i64,
    pub committed: BTreeMap<i32, i64>,
}

/// Lag at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LagPoint {
    /// Seconds since the measured traffic started.
    pub t_s: f64,
    pub messages: u64,
    pub seconds: f64,
}

/// Lag at every sample. Offsets below the first measured record of a partition belong to the
/// set-up, which was applied before the measurement began; a partition with no commit yet counts
/// from there.
pub fn series(start_ms: i64, produced: &[Produced], samples: &[Sample]) -> Vec<LagPoint> {
    let mut by_partition: BTreeMap<i32, Vec<Produced>> = BTreeMap::new();
    for p in produced {
        by_partition.entry(p.partition).or_default().push(*p);
    }
    let sent_at: HashMap<(i32, i64), i64> = produced
        .iter()
        .map(|p| ((p.partition, p.offset), p.sent_ms))
        .collect();
    samples
        .iter()
        .map(|s| {
            let (mut messages, mut oldest) = (0u64, None::<i64>);
            for (partition, records) in &by_partition {
                let base = records.iter().map(|r| r.offset).min().unwrap_or(0);
                let end = records
                    .iter()
                    .filter(|r| r.acked_ms <= s.at_ms)
                    .map(|r| r.offset + 1)
                    .max()
                    .unwrap_or(base);
                let committed = s
                    .committed
                    .get(partition)
                    .copied()
                    .unwrap_or(base)
                    .max(base);
                if committed < end {
                    messages += (end - committed) as u64;
                    let since = sent_at
                        .get(&(*partition, committed))
                        .copied()
                        .unwrap_or(start_ms);
                    oldest = Some(oldest.map_or(since, |o| o.min(since)));
                }
            }
            LagPoint {
                t_s: (s.at_ms - start_ms) as f64 / 1e3,
                messages,
                seconds: oldest.map_or(0.0, |o| (s.at_ms - o).max(0) as f64 / 1e3),
            }
        })
        .collect()
}

/// Whether `committed` has reached the end of every partition in `produced`.
pub fn drained(produced: &[Produced], committed: &BTreeMap<i32, i64>) -> bool {
    produced
        .iter()
        .all(|p| committed.get(&p.partition).is_some_and(|c| *c > p.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64, sent_ms: i64) -> Produced {
        Produced {
            partition,
            offset,
            sent_ms,
            acked_ms: sent_ms + 1,
        }
    }

    #[test]
    fn lag_counts_acknowledged_records_above_the_commit() {
        // Partition 0: set-up up to offset 9, measured 10..=13 sent at 1000, 1100, 1200, 1300.
        // Partition 1: measured 5..=6 sent at 1050, 1150.
        let produced = [
            rec(0, 10, 1_000),
            rec(0, 11, 1_100),
            rec(0, 12, 1_200),
            rec(0, 13, 1_300),
            rec(1, 5, 1_050),
            rec(1, 6, 1_150),
        ];
        let sample = |at_ms, c0, c1| Sample {
            at_ms,
            committed: BTreeMap::from([(0, c0), (1, c1)]),
        };
        let samples = [
            sample(1_000, 10, 5), // nothing acknowledged yet
            sample(1_250, 11, 5), // p0: 11, 12 acknowledged, uncommitted; p1: 5, 6
            sample(1_400, 14, 6), // p0 done; p1: offset 6 left, sent at 1150
            sample(1_500, 14, 7), // all done
        ];
        let lag = series(1_000, &produced, &samples);
        assert_eq!(lag[0].messages, 0);
        assert_eq!(lag[1].messages, 4);
        assert_eq!(
            lag[1].seconds,
            (1_250 - 1_050) as f64 / 1e3,
            "oldest: p1 offset 5"
        );
        assert_eq!(lag[2].messages, 1);
        assert_eq!(lag[2].seconds, 0.25);
        assert_eq!(lag[3].messages, 0);
        assert_eq!(lag[3].seconds, 0.0);
        assert_eq!(lag[1].t_s, 0.25);
        assert!(!drained(&produced, &samples[2].committed));
        assert!(drained(&produced, &samples[3].committed));
    }
}
