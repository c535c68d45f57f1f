//! One chaos run, start to verdict: bring up the rig, send traffic while the schedule's faults
//! happen, wait for the consumers to catch up, check, tear down.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::faults::Say;
use crate::faults::{fault, watch_until};
use crate::postgres::{find_bin_dir, Cluster};
use crate::schedule::Schedule;
use crate::service::{Env, Service};
use crate::traffic::{self, Sent};
use crate::verdict::Verdict;
use crate::{history, logs, verify, Error, Profile, Result};

/// The service's database in the run's own cluster.
const DATABASE: &str = "kafkaesque";
/// Partitions of the run's topic.
const PARTITIONS: usize = 8;
/// How long the API has to answer `/readyz` after it starts.
const READY_LIMIT: Duration = Duration::from_secs(90);

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

    let bin = o.pg_bin.clone().or_else(find_bin_dir).ok_or_else(|| {
        Error::Setup("no PostgreSQL server programs under /usr/lib/postgresql: run `scripts/db ensure` (installs Debian's postgresql)".into())
    })?;
    let db = Cluster::create(&bin, &work.join("pg-service")).await?;
    say.line(format_args!(
        "PostgreSQL of the service on port {}",
        db.port()
    ));
    let (storage, broker_db, restart_skipped) = broker_storage(&o, &profile, &bin, &work).await?;
    let mut broker = Broker::start(o.nisshi.clone(), storage, logs_dir.join("broker.log")).await?;
    say.line(format_args!(
        "broker at {} ({} storage)",
        broker.bootstrap(),
        if broker.durable() {
            "PostgreSQL"
        } else {
            "memory"
        }
    ));

    let token = format!("chaos-{}", uuid::Uuid::new_v4());
    let env = Env {
        vars: vec![
            ("KAFKA_BROKERS".into(), broker.bootstrap()),
            ("DATABASE_URL".into(), db.url(DATABASE)),
            ("KAFKAESQUE_ADMIN_TOKEN".into(), token.clone()),
            ("KAFKAESQUE_TOPIC".into(), "chaos-updates".into()),
            ("KAFKAESQUE_PARTITIONS".into(), PARTITIONS.to_string()),
            ("KAFKAESQUE_GROUP".into(), "chaos".into()),
            (
                "KAFKAESQUE_CONCURRENCY".into(),
                profile.concurrency.to_string(),
            ),
            ("RUST_LOG".into(), logs::FILTER.into()),
        ],
    };
    let mut service = Service::start(o.binary.clone(), env, logs_dir.clone())?;
    wait_ready(&service.api_url).await?;
    history::install(&crate::postgres::connect(&db.url(DATABASE)).await?).await?;
    for _ in 0..profile.consumers {
        service.join()?;
    }
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

/// The broker's storage: PostgreSQL (a cluster of its own, so the database outage does not
/// take the broker down with it) when the run restarts the broker and nisshi's schema is there;
/// memory otherwise, with the reason the restart is skipped.
async fn broker_storage(
    o: &Options,
    profile: &Profile,
    bin: &std::path::Path,
    work: &std::path::Path,
) -> Result<(String, Option<Cluster>, Option<String>)> {
    let memory = "memory://tansu/".to_owned();
    if profile.broker_restart.is_none() {
        return Ok((memory, None, Some("not part of the quick run".into())));
    }
    let schema = match std::fs::read_to_string(&o.broker_schema) {
        Ok(schema) => schema,
        Err(e) => {
            let why = format!("no nisshi schema at {} ({e})", o.broker_schema.display());
            println!("chaos: {why}: the durable broker restart is skipped");
            return Ok((memory, None, Some(why)));
        }
    };
    let cluster = Cluster::create(bin, &work.join("pg-broker")).await?;
    cluster.create_database("nisshi", Some(&schema)).await?;
    let url = format!("{}?sslmode=disable", cluster.url("nisshi"));
    Ok((url, Some(cluster), None))
}

async fn wait_ready(api: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + READY_LIMIT;
    while Instant::now() < deadline {
        let answer = http.get(format!("{api}/readyz")).send().await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(Error::Setup(format!(
        "the API at {api} was not ready within {READY_LIMIT:?}"
    )))
}

/// Now, in milliseconds since the Unix epoch: the clock the history's times are on.
fn epoch_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as i64)
}
