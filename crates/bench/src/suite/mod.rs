//! `kafkaesque bench`: runs the comparisons at one of three sizes and writes the report folder.
//!
//! - `--smoke`: tiny, seconds; its figures mean nothing. The test suite runs it so that the
//!   tool cannot silently rot.
//! - `--quick`: small, about eight minutes on a 2-core machine (six of them the peer rows).
//! - neither: the full run, the figures `docs/benchmarks.md` quotes.
//!
//! At `--smoke` size the comparisons (and the incident's replays) run at once rather than one
//! after another: the test suite's time matters more than figures that mean nothing anyway.
//!
//! A comparison that fails is listed in the report under "Did not run" with its error, and the
//! others still run.

mod sizes;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::compare::{
    apply_rate, concurrency, engine, exactly_once, http_edge, incident, overhead, peers,
};
use crate::report::{Figure, Report, Series};
use crate::rig::Rig;
pub use sizes::Sizes;

/// A comparison, to run alone with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Engine,
    Overhead,
    Concurrency,
    /// Exactly-once against at-least-once, on the no-op run and on the 5 ms run.
    ExactlyOnce,
    Incident,
    Http,
    Apply,
    /// Confluent's Parallel Consumer (Java) side by side with ours: rows a to e.
    Peers,
}

/// The benchmark's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Small sizes: about eight minutes on a 2-core machine.
    #[arg(long, conflicts_with = "smoke")]
    pub quick: bool,
    /// Tiny sizes, seconds: checks that every comparison runs; the figures mean nothing.
    #[arg(long)]
    pub smoke: bool,
    /// The report folder [default: target/bench/<smoke|quick|full>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only these comparisons (repeatable; default: all).
    #[arg(long, value_enum)]
    pub only: Vec<Which>,
    /// Internal: run one incident replay's consumer in this process (the benchmark starts one
    /// such child per replay).
    #[arg(long, hide = true)]
    pub replay_worker: Option<String>,
    /// Internal: run one side of a peer comparison in this process.
    #[arg(long, hide = true)]
    pub peer_worker: Option<String>,
}

impl BenchArgs {
    fn sizes(&self) -> Sizes {
        if self.smoke {
            Sizes::smoke()
        } else if self.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        }
    }

    fn wants(&self, which: Which) -> bool {
        self.only.is_empty() || self.only.contains(&which)
    }
}

/// Runs the benchmark and returns the report folder (or, for `--replay-worker`, runs that and
/// returns nothing). Progress goes to standard error.
///
/// The incident replay re-runs the current executable as its child, so this must be called from
/// the `kafkaesque` binary.
///
/// # Errors
/// When the broker or PostgreSQL cannot be reached, or the report cannot be written.
pub async fn run(args: BenchArgs) -> Result<Option<PathBuf>> {
    if let Some(job) = &args.replay_worker {
        incident::worker::run(job).await?;
        return Ok(None);
    }
    if let Some(job) = &args.peer_worker {
        peers::worker::run(job).await?;
        return Ok(None);
    }
    let sizes = args.sizes();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench").join(sizes.mode));
    let rig = Rig::connect().await?;
    let began = Instant::now();
    let mut report = Report {
        mode: sizes.mode.to_owned(),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        duration_s: 0.0,
        figures: Vec::new(),
        series: Vec::new(),
        failures: Vec::new(),
    };
    let r = sizes.reps;
    let mut jobs: Vec<(&str, Job<'_>)> = Vec::new();
    if args.wants(Which::Engine) {
        jobs.push((
            "engine alone",
            Box::pin(async move {
                let f = tokio::task::spawn_blocking(move || engine::run(sizes.engine_records, r));
                Ok((f.await?, vec![]))
            }),
        ));
    }
    if args.wants(Which::Overhead) {
        let f = overhead::run(&rig.broker, sizes.overhead_records, r);
        jobs.push(("overhead", Box::pin(async { Ok((f.await?, vec![])) })));
    }
    if args.wants(Which::Concurrency) {
        let (n, serial) = (sizes.concurrency_records, sizes.serial_records);
        let f = concurrency::run(&rig.broker, n, serial, r);
        jobs.push(("concurrency", Box::pin(async { Ok((f.await?, vec![])) })));
    }
    if args.wants(Which::ExactlyOnce) {
        let (n, slow) = (sizes.overhead_records, sizes.concurrency_records);
        let f = exactly_once::run(&rig.broker, n, slow, r);
        jobs.push(("exactly-once", Box::pin(async { Ok((f.await?, vec![])) })));
    }
    if args.wants(Which::Incident) {
        let f = incident::run(&rig, sizes.incident, sizes.parallel);
        jobs.push(("incident replay", Box::pin(f)));
    }
    if args.wants(Which::Http) {
        let f = http_edge::run(&rig, sizes.http_seconds, sizes.http_connections, r);
        jobs.push(("HTTP edge", Box::pin(async { Ok((f.await?, vec![])) })));
    }
    if args.wants(Which::Apply) {
        let f = apply_rate::run(&rig, sizes.apply_rows, sizes.apply_updates, r);
        jobs.push((
            "PostgreSQL apply rate",
            Box::pin(async { Ok((f.await?, vec![])) }),
        ));
    }
    if args.wants(Which::Peers) {
        push_peers(&mut jobs, &rig, sizes);
    }
    let timed = jobs.into_iter().map(|(name, job)| async move {
        eprintln!("{name}…");
        let t = Instant::now();
        let outcome = job.await;
        match &outcome {
            Ok(_) => eprintln!("  {name}: done in {:.0} s", t.elapsed().as_secs_f64()),
            Err(e) => eprintln!("  {name}: failed: {e:#}"),
        }
        (name, outcome)
    });
    let outcomes = if sizes.parallel {
        futures::future::join_all(timed).await
    } else {
        let mut outcomes = Vec::new();
        for job in timed {
            outcomes.push(job.await);
        }
        outcomes
    };
    for (name, outcome) in outcomes {
        match outcome {
            Ok((figures, series)) => {
                report.figures.extend(figures);
                report.series.extend(series);
            }
            Err(e) => report.failures.push(format!("{name}: {e:#}")),
        }
    }
    report.duration_s = began.elapsed().as_secs_f64();
    for path in report.write(&out)? {
        eprintln!("wrote {}", path.display());
    }
    Ok(Some(out))
}

/// The peer comparison's rows, each a job of its own: one that fails leaves the others.
fn push_peers<'a>(jobs: &mut Vec<(&'static str, Job<'a>)>, rig: &'a Rig, sizes: Sizes) {
    let (p, r, b) = (sizes.peers, sizes.reps, &rig.broker);
    let a = peers::throughput::run(b, p.noop_records, p.noop_warmup, r);
    jobs.push(("peers a: no-op", Box::pin(async { Ok((a.await?, vec![])) })));
    let readme = peers::readme::run(b, p.readme_records, r, p.readme_partition_reps);
    jobs.push((
        "peers b: README",
        Box::pin(async { Ok((readme.await?, vec![])) }),
    ));
    jobs.push((
        "peers c: incident",
        Box::pin(peers::incident::run(b, p.incident)),
    ));
    let e = peers::replays::run(b, p.replay_records);
    jobs.push((
        "peers e: replays",
        Box::pin(async { Ok((e.await?, vec![])) }),
    ));
}

/// One comparison, not yet started.
type Job<'a> = Pin<Box<dyn Future<Output = Result<(Vec<Figure>, Vec<Series>)>> + Send + 'a>>;
