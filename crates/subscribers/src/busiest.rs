//! Updates per app and per row over the last minute, as the router sees them: the first half of
//! `GET /admin/top`, the view that would have found the production incident's hot parent row in
//! a minute.
//!
//! Sixty one-second buckets; a bucket counts at most [`MAX_ROWS_PER_SECOND`] distinct rows
//! (a row first seen after that is not counted for that second). A hot row is seen early in
//! every second, so the cap costs accuracy only in the long tail that nobody looks at.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use uuid::Uuid;

/// The window the counts cover, in seconds.
pub const WINDOW_SECONDS: u64 = 60;

/// Distinct rows one bucket counts.
pub const MAX_ROWS_PER_SECOND: usize = 50_000;

/// Ids with their update counts, busiest first.
pub type Ranking = Vec<(Uuid, u64)>;

#[derive(Debug, Default)]
struct Bucket {
    second: u64,
    apps: HashMap<Uuid, u64>,
    rows: HashMap<Uuid, u64>,
}

/// Shared between the router (which counts) and the HTTP handler (which reads).
#[derive(Debug, Clone)]
pub struct Busiest {
    inner: Arc<Mutex<VecDeque<Bucket>>>,
    start: Instant,
}

impl Default for Busiest {
    fn default() -> Self {
        Busiest {
            inner: Arc::default(),
            start: Instant::now(),
        }
    }
}

impl Busiest {
    /// One record of `app`, written to each of `rows`.
    pub fn count(&self, app: Uuid, rows: &[Uuid]) {
        let now = self.start.elapsed().as_secs();
        let mut buckets = self.inner.lock().expect("top lock");
        if buckets.back().is_none_or(|b| b.second != now) {
            buckets.push_back(Bucket {
                second: now,
                ..Bucket::default()
            });
        }
        while buckets
            .front()
            .is_some_and(|b| b.second + WINDOW_SECONDS <= now)
        {
            buckets.pop_front();
        }
        let b = buckets.back_mut().expect("pushed above");
        *b.apps.entry(app).or_default() += 1;
        for row in rows {
            if let Some(n) = b.rows.get_mut(row) {
                *n += 1;
            } else if b.rows.len() < MAX_ROWS_PER_SECOND {
                b.rows.insert(*row, 1);
            }
        }
    }

    /// The `n` busiest apps and rows of the last minute, busiest first.
    pub fn top(&self, n: usize) -> (Ranking, Ranking) {
        let now = self.start.elapsed().as_secs();
        let buckets = self.inner.lock().expect("top lock");
        let mut apps: HashMap<Uuid, u64> = HashMap::new();
        let mut rows: HashMap<Uuid, u64> = HashMap::new();
        for b in buckets.iter().filter(|b| b.second + WINDOW_SECONDS > now) {
            for (k, v) in &b.apps {
                *apps.entry(*k).or_default() += v;
            }
            for (k, v) in &b.rows {
                *rows.entry(*k).or_default() += v;
            }
        }
        (busiest(apps, n), busiest(rows, n))
    }
}

fn busiest(counts: HashMap<Uuid, u64>, n: usize) -> Ranking {
    let mut all: Vec<(Uuid, u64)> = counts.into_iter().collect();
    all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_rows_and_apps_come_first() {
        let top = Busiest::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (parent, child) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            top.count(a, &[child, parent]);
        }
        top.count(b, &[Uuid::new_v4()]);
        let (apps, rows) = top.top(2);
        assert_eq!(apps, vec![(a, 3), (b, 1)]);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|(_, n)| *n == 3), "{rows:?}");
    }
}
