//! One chaos run, start to verdict: bring up the rig, send traffic while the schedule's faults
//! happen, wait for the consumers to catch up, check, tear down.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::faults::{fault, watch_until, Say};
use crate::rig::{Rig, DATABASE, READY_LIMIT};
use crate::schedule::Schedule;
use crate::traffic::{self, Sent};
use crate::verdict::Verdict;
use crate::{history, logs, verify, Error, Profile, Result};

/// What the command line decides.
#[derive(Debug, Clone)]
pub struct Options {
    /// The short run of the test suite rather than the full one.
    pub quick: bool,
    /// Seeds the schedule: the same seed, the same faults at the same times.
    pub seed: u64,
    /// The `kafkaesque` executable whose `api` and `consume` are run.
    pub binary: PathBuf,
    /// The nisshi broker executable.
    pub nisshi: PathBuf,
    /// nisshi's PostgreSQL schema, needed for the durable broker restart; read at run time.
    pub broker_schema: PathBuf,
    /// PostgreSQL's server programs (`initdb`, `pg_ctl`); found under /usr/lib/postgresql if unset.
    pub pg_bin: Option<PathBuf>,
    /// Where logs and data go; a fresh temporary folder if unset.
    pub work_dir: Option<PathBuf>,
    /// Keep the work folder even when the run passes.
    pub keep: bool,
}

/// Runs the whole thing and returns the verdict; `Err` only when the rig could not be set up.
pub async fn run(o: Options) -> Result<Verdict> {
    let say = Say::default();
    let profile = if o.quick {
        Profile::quick()
    } else {
        Profile::full()
    };
    let work = o.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "kafkaesque-chaos-{}-{}",
            std::process::id(),
            o.seed
        ))
    });
    let logs_dir = work.join("logs");
    std::fs::create_dir_all(&logs_dir)
        .map_err(Error::io(format!("creating {}", logs_dir.display())))?;
    say.line(format_args!("work folder {}", work.display()));

    let rig = Rig::bring_up(&o, &profile, &work, &say).await?;
    let Rig {
        db,
        broker_db,
        mut broker,
        mut service,
        token,
        restart_skipped,
    } = rig;
    let subs = traffic::set_up(
        &service.api_url,
        &token,
        profile.apps,
        profile.subscriptions,
    )
    .await?;
    let created: Vec<_> = subs.iter().map(|s| (s.clone(), Sent::default())).collect();
    if verify::catch_up(&db.url(DATABASE), &created, READY_LIMIT)
        .await
        .is_none()
    {
        return Err(Error::Setup(format!(
            "the consumers did not create the {} subscriptions within {READY_LIMIT:?}; see {}",
            subs.len(),
            logs_dir.display()
        )));
    }
    say.line(format_args!(
        "API and {} consumers up; {} subscriptions in {} apps",
        service.consumers(),
        subs.len(),
        profile.apps
    ));

    let schedule = Schedule::new(&profile, o.seed, restart_skipped.is_none());
    let mut verdict = Verdict {
        mode: if o.quick { "quick" } else { "full" },
        seed: o.seed,
        broker_restart_skipped: restart_skipped,
        ..Verdict::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(traffic::drive(
        service.api_url.clone(),
        subs,
        profile.rate_per_subscription,
        stop.clone(),
    ));
    say.line(format_args!(
        "traffic for {:.0} s, {} faults (seed {})",
        schedule.traffic.as_secs_f64(),
        schedule.steps.len(),
        o.seed
    ));
    let start = Instant::now();
    let traffic_began = epoch_ms();
    let mut most_consumers = service.consumers();
    for step in &schedule.steps {
        watch_until(start + step.at, &mut service, &mut broker, &say).await?;
        fault(
            &step.fault,
            &mut service,
            &mut broker,
            &db,
            &mut verdict,
            &say,
        )
        .await?;
        most_consumers = most_consumers.max(service.consumers());
    }
    watch_until(start + schedule.traffic, &mut service, &mut broker, &say).await?;
    stop.store(true, Ordering::Relaxed);
    let traffic_ended = epoch_ms();
    let ledger = traffic
        .await
        .map_err(|e| Error::Setup(format!("the traffic task failed: {e}")))??;
    say.line("traffic stopped; waiting for the consumers to catch up");
    verdict.caught_up = verify::catch_up(&db.url(DATABASE), &ledger, profile.catch_up).await;
    service.reap()?;

    let pg = crate::postgres::connect(&db.url(DATABASE)).await?;
    let ids: Vec<_> = ledger.iter().map(|(s, _)| s.id).collect();
    let rows = verify::rows(&pg, &ids).await?;
    let writes = history::read(&pg).await?;
    verdict.checks = verify::judge(&ledger, &rows, &writes, (traffic_began, traffic_ended));
    verdict.sent = ledger.iter().map(|(_, s)| s.requests).sum();
    verdict.resent = ledger
        .iter()
        .flat_map(|(_, s)| s.resends.values())
        .map(|r| u64::from(*r))
        .sum();
    verdict.group_concurrency = (most_consumers * profile.concurrency) as u64;
    service.stop().await?;
    broker.stop().await?;
    verdict.logs = logs::read(&service.consumer_logs);
    verdict.crashes = service.crashes.clone();
    verdict.took = say.elapsed();
    drop((db, broker_db));
    if verdict.passed() && !o.keep {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        verdict
            .notes
            .push(format!("logs and data kept in {}", work.display()));
    }
    Ok(verdict)
}

/// Now, in milliseconds since the Unix epoch: the clock the history's times are on.
fn epoch_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as i64)
}
