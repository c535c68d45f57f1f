//! Sends traffic at a rate for a duration, a bounded number of requests in flight, and keeps
//! what happened to each one.
//!
//! The schedule is open-loop: update *i* is due at `start + i / rate`, whether or not earlier ones
//! were answered, as real clients do not wait for each other. Only the in-flight bound holds it
//! back, and then the summary's rate falls short of the asked-for one — the sign of a saturated
//! target. Rate 0 means closed-loop: as fast as the in-flight bound allows.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::traffic::{Planned, Traffic};
use crate::stats::quantile;

/// How fast, how long, how many at once.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Updates per second; 0: as fast as `in_flight` allows.
    pub rate: f64,
    pub duration: Duration,
    pub in_flight: usize,
}

/// What became of one update.
#[derive(Debug, Clone)]
pub struct Sent {
    /// When it was handed to the target, in milliseconds since the epoch (the clock the broker's
    /// record timestamps use).
    pub at_ms: i64,
    pub latency: Duration,
    pub flood: bool,
    /// Where the broker put it, when the target knows.
    pub delivered: Option<(i32, i64)>,
    /// Why it failed: an HTTP status or an error's kind.
    pub error: Option<String>,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sends `traffic` with `send` at `pace`; ticks `progress` once per answered update.
pub async fn drive<S, F>(
    traffic: &mut Traffic,
    pace: Pace,
    send: S,
    progress: &ProgressBar,
) -> Vec<Sent>
where
    S: Fn(Planned) -> F,
    F: Future<Output = Result<Option<(i32, i64)>, String>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(pace.in_flight.max(1)));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut i: u64 = 0;
    while start.elapsed() < pace.duration {
        if pace.rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / pace.rate);
            tokio::time::sleep_until(due).await;
            if start.elapsed() >= pace.duration {
                break;
            }
        }
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let planned = traffic.next_update();
        let flood = planned.flood;
        let request = send(planned);
        let (sent, progress) = (Arc::clone(&sent), progress.clone());
        tokio::spawn(async move {
            let (at_ms, began) = (now_ms(), Instant::now());
            let outcome = request.await;
            let latency = began.elapsed();
            drop(permit);
            progress.inc(1);
            let (delivered, error) = match outcome {
                Ok(d) => (d, None),
                Err(e) => (None, Some(e)),
            };
            sent.lock().expect("sent lock").push(Sent {
                at_ms,
                latency,
                flood,
                delivered,
                error,
            });
        });
        i += 1;
    }
    // Every permit back: every update answered.
    let _ = permits.acquire_many(pace.in_flight.max(1) as u32).await;
    let sent = std::mem::take(&mut *sent.lock().expect("sent lock"));
    sent
}

/// The load generator's summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub sent: usize,
    pub acknowledged: usize,
    /// Failed updates by HTTP status or error kind.
    pub errors: BTreeMap<String, usize>,
    /// Acknowledged updates per second over the run.
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Summary {
    /// Sums up `sent` over `elapsed`; latencies are those of acknowledged updates.
    pub fn of(sent: &[Sent], elapsed: Duration) -> Self {
        let mut errors = BTreeMap::new();
        let mut latencies = Vec::with_capacity(sent.len());
        for s in sent {
            match &s.error {
                Some(e) => *errors.entry(e.clone()).or_insert(0) += 1,
                None => latencies.push(s.latency.as_secs_f64() * 1e3),
            }
        }
        latencies.sort_by(f64::total_cmp);
        Summary {
            sent: sent.len(),
            acknowledged: latencies.len(),
            errors,
            rate: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: quantile(&latencies, 0.5),
            p99_ms: quantile(&latencies, 0.99),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "sent          {}", self.sent)?;
        writeln!(f, "acknowledged  {}", self.acknowledged)?;
        for (kind, n) in &self.errors {
            writeln!(f, "error {kind:<8}{n}")?;
        }
        writeln!(f, "rate          {:.0} acknowledged/s", self.rate)?;
        write!(
            f,
            "latency       p50 {:.2} ms, p99 {:.2} ms",
            self.p50_ms, self.p99_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::traffic::{App, Scenario};
    use uuid::Uuid;

    #[tokio::test(start_paused = true)]
    async fn an_open_loop_keeps_its_rate_and_counts_failures_by_kind() {
        let apps = vec![App {
            id: Uuid::new_v4(),
            players: vec![Uuid::new_v4()],
        }];
        let mut traffic = Traffic::new(Scenario::Uniform, apps, 0.0, 1);
        let pace = Pace {
            rate: 200.0,
            duration: Duration::from_millis(250),
            in_flight: 8,
        };
        let n = std::sync::atomic::AtomicU64::new(0);
        let sent = drive(
            &mut traffic,
            pace,
            |_| {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    if i % 5 == 4 {
                        Err("503".to_owned())
                    } else {
                        Ok(Some((0, i as i64)))
                    }
                }
            },
            &ProgressBar::hidden(),
        )
        .await;
        // On the paused clock: exactly the 50 due in 250 ms at 200/s.
        assert_eq!(sent.len(), 50);
        let summary = Summary::of(&sent, pace.duration);
        assert_eq!(summary.sent, 50);
        assert_eq!(summary.errors["503"], 10);
        assert_eq!(summary.acknowledged, 40);
        assert!(sent
            .iter()
            .all(|s| s.error.is_some() != s.delivered.is_some()));
    }
}
