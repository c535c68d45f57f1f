//! Row e: a consumer SIGKILLed four fifths of the way through a topic, then restarted in the
//! same group: how many records each side handles twice. Both read the same topic (4
//! partitions, 1,000 keys) with a 10 ms handler at concurrency 10 (about 1,000 records/s, so
//! that several commit intervals of both sides pass before the kill: Parallel Consumer commits
//! every 5 s by default, ours every second), each in its default commit mode. Every handled
//! record is printed as it completes, so what the killed process did is known exactly. Target:
//! ours replays no more than Parallel Consumer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kafkaesque_testkit::Broker;

use super::side::{Handler, Job, Line, Order, Running, Side};
use super::{filled_topic, job};
use crate::report::{Figure, Target};

const C: &str = "peers e: replays after SIGKILL";
const LIMIT: Duration = Duration::from_secs(180);
const CONCURRENCY: usize = 10;
/// The share of the records handled when the first process is killed.
const KILL_AT: f64 = 0.8;

/// What one side's kill and restart found.
struct Found {
    twice: usize,
    /// From the restart to its first handled record.
    restart_s: f64,
}

/// # Errors
/// When the topic cannot be made or a side fails.
pub async fn run(broker: &Broker, records: usize) -> Result<Vec<Figure>> {
    let topic = filled_topic(broker, "bench-peers-replays", 4, records, 1_000).await?;
    let handler = Handler {
        base_ms: 10,
        ..Handler::default()
    };
    let mut found = Vec::new();
    for side in [Side::ParallelConsumer, Side::Ours] {
        let j = Job {
            stream: true,
            ..job(
                side,
                broker,
                topic.name(),
                Order::Key,
                50,
                0,
                0,
                handler.clone(),
            )
        };
        found.push(kill_and_restart(&j, records).await?);
    }
    let [pc, ours] = [&found[0], &found[1]];
    let pc_twice = Figure::new(
        C,
        "Parallel Consumer: handled twice",
        "records",
        vec![pc.twice as f64],
    )
    .note(format!(
        "{records} records, 4 partitions, 1,000 keys, 10 ms handler, concurrency {CONCURRENCY}; \
         SIGKILL once {:.0}% of them were handled, then a restart in the same group until all \
         were; each side's default commit mode (Parallel Consumer: asynchronous every 5 s; ours: \
         every second); one run each",
        KILL_AT * 100.0
    ));
    let mut ours_twice = Figure::new(
        C,
        "kafkaesque: handled twice",
        "records",
        vec![ours.twice as f64],
    );
    ours_twice.target = Some(Target {
        text: "≤ Parallel Consumer".into(),
        met: ours.twice <= pc.twice,
    });
    let restart = |s: &str, f: &Found| {
        Figure::new(
            C,
            &format!("{s}: restart to first record"),
            "s",
            vec![f.restart_s],
        )
    };
    Ok(vec![
        pc_twice,
        ours_twice,
        restart("Parallel Consumer", pc),
        restart("kafkaesque", ours),
    ])
}

async fn kill_and_restart(job: &Job, records: usize) -> Result<Found> {
    let deadline = Instant::now() + LIMIT;
    let mut first = Running::start(job).await?;
    let mut before = Vec::new();
    while (before.len() as f64) < records as f64 * KILL_AT {
        match tokio::time::timeout_at(deadline.into(), first.next()).await?? {
            Some(Line::Done(p, o)) => before.push((p, o)),
            Some(_) => {}
            None => bail!("{:?} ended before it was killed", job.side),
        }
    }
    first.kill()?;
    before.extend(first.rest().await?);
    let seen: HashSet<(i32, i64)> = before.iter().copied().collect();
    let mut twice = before.len() - seen.len();
    let mut all = seen.clone();
    let restarted = Instant::now();
    let mut second = Running::start(job).await?;
    let mut restart_s = None;
    while all.len() < records {
        match tokio::time::timeout_at(deadline.into(), second.next()).await?? {
            Some(Line::Done(p, o)) => {
                restart_s.get_or_insert_with(|| restarted.elapsed().as_secs_f64());
                if !all.insert((p, o)) {
                    twice += 1;
                }
            }
            Some(_) => {}
            None => bail!(
                "{:?} ended after {} of {records} records",
                job.side,
                all.len()
            ),
        }
    }
    second.kill()?;
    let _ = second.rest().await;
    Ok(Found {
        twice,
        restart_s: restart_s.unwrap_or(f64::NAN),
    })
}
