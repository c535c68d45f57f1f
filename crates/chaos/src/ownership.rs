//! How long partitions went without an owner in the group: the time no consumer could make
//! progress on them, which a kill or a broker fault costs. From the consumers' logs: the runtime
//! logs `partition assigned` and `partition revoked` (with the topic and partition) as it takes
//! a partition on or gives it up; a process that was killed or crashed logs nothing more, so its
//! partitions are without owner from the moment it ended (which the supervisor recorded).
//!
//! A partition's time without owner runs from the moment its last owner let it go (or died) to
//! the next `partition assigned`; the first assignment of each partition, and a partition that
//! nobody takes again (at the end of the run), count no gap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde_json::Value;

/// The longest time one partition went without owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unowned {
    pub partition: i32,
    /// When it began, in milliseconds since the Unix epoch (the run makes it relative).
    pub from_ms: i64,
    /// How long it lasted.
    pub ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Ordered first at equal times: an end or a revocation, then the assignment after it.
    Ended,
    Revoked(i32),
    Assigned(i32),
}

/// The longest time a partition of `topic` had no owner, over every consumer log (`ended`: when
/// each process that is gone ended, by its log).
pub fn longest(logs: &[PathBuf], ended: &HashMap<PathBuf, i64>, topic: &str) -> Option<Unowned> {
    let mut events: Vec<(i64, Event, usize)> = Vec::new();
    for (who, path) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        events.extend(
            text.lines()
                .filter_map(|l| event(l, topic))
                .map(|(t, e)| (t, e, who)),
        );
        if let Some(t) = ended.get(path) {
            events.push((*t, Event::Ended, who));
        }
    }
    events.sort();
    longest_gap(&events)
}

fn longest_gap(events: &[(i64, Event, usize)]) -> Option<Unowned> {
    let mut owners: BTreeMap<i32, BTreeSet<usize>> = BTreeMap::new();
    let mut since: HashMap<i32, i64> = HashMap::new();
    let mut best: Option<Unowned> = None;
    for &(t, e, who) in events {
        let released: Vec<i32> = match e {
            Event::Assigned(p) => {
                if let Some(from) = since.remove(&p) {
                    if best.is_none_or(|b| t - from > b.ms) {
                        best = Some(Unowned {
                            partition: p,
                            from_ms: from,
                            ms: t - from,
                        });
                    }
                }
                owners.entry(p).or_default().insert(who);
                continue;
            }
            Event::Revoked(p) => vec![p],
            Event::Ended => owners
                .iter()
                .filter(|(_, o)| o.contains(&who))
                .map(|(p, _)| *p)
                .collect(),
        };
        for p in released {
            let o = owners.entry(p).or_default();
            if o.remove(&who) && o.is_empty() {
                since.insert(p, t);
            }
        }
    }
    best
}

/// A `partition assigned` or `partition revoked` line of `topic`, with its time.
fn event(line: &str, topic: &str) -> Option<(i64, Event)> {
    // Most lines are deliveries: skip them before parsing.
    if !line.contains("partition assigned") && !line.contains("partition revoked") {
        return None;
    }
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = &v["fields"];
    if fields["topic"].as_str() != Some(topic) {
        return None;
    }
    let p = i32::try_from(fields["partition"].as_i64()?).ok()?;
    let e = match fields["message"].as_str()? {
        "partition assigned" => Event::Assigned(p),
        "partition revoked" => Event::Revoked(p),
        _ => return None,
    };
    Some((epoch_ms(v["timestamp"].as_str()?)?, e))
}

/// `2025-06-01T22:31:36.123456Z` (UTC, as the logs write it) in milliseconds since the epoch.
fn epoch_ms(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    let days = days_from_civil(y, m, day);
    Some(((days * 24 + h) * 60 + min) * 60_000 + sec * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_read_as_the_logs_write_them() {
        assert_eq!(epoch_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            epoch_ms("2024-02-29T12:00:00.123456Z"),
            Some(1_709_208_000_123)
        );
    }

    #[test]
    fn the_gap_runs_from_a_kill_or_a_revoke_to_the_next_assignment() {
        let line = |t: &str, msg: &str, p: i32| {
            format!(
                r#"{{"timestamp":"1970-01-01T00:00:{t}Z","fields":{{"message":"{msg}","topic":"x","partition":{p}}}}}"#
            )
        };
        let a = [
            line("01.000", "partition assigned", 0),
            line("01.000", "partition assigned", 1),
            line("20.000", "partition revoked", 1),
        ];
        let b = [
            line("02.000", "partition assigned", 2),
            line("21.000", "partition assigned", 1),
            line("30.000", "partition assigned", 0),
        ];
        let mut events = Vec::new();
        for (who, lines) in [a, b].iter().enumerate() {
            for l in lines {
                let (t, e) = event(l, "x").unwrap();
                events.push((t, e, who));
            }
        }
        // Partition 1 is handed over cleanly in 1 s. Process 0 is killed at 22 s: partition 0
        // is without owner until 30 s.
        events.push((22_000, Event::Ended, 0));
        events.sort();
        let u = longest_gap(&events).unwrap();
        assert_eq!((u.partition, u.from_ms, u.ms), (0, 22_000, 8_000));
    }
}
