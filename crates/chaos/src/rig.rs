//! The rig of one run, brought up from nothing: a PostgreSQL cluster for the service, a Kafka
//! cluster of the run's own, the API and the consumers, and the write history in the service's
//! database.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::metadata::Topic;
use crate::progress::Progress;
use crate::service::{Env, Service};
use crate::{broker, history, logs, postgres, Error, Profile, Result};

/// Where `scripts/broker` is in the source tree this was built from.
pub const BROKER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/broker");

/// What the command line decides.
#[derive(Debug, Clone)]
pub struct Options {
    /// The short run of the test suite rather than the full one.
    pub quick: bool,
    /// Seeds the schedule: the same seed, the same faults at the same times.
    pub seed: u64,
    /// The `kafkaesque` executable whose `api` and `consume` are run.
    pub binary: PathBuf,
    /// `scripts/broker`, which starts and stops the run's Kafka nodes ([`BROKER_SCRIPT`]).
    pub broker_script: PathBuf,
    /// PostgreSQL's server programs (`initdb`, `pg_ctl`); found under /usr/lib/postgresql if unset.
    pub pg_bin: Option<PathBuf>,
    /// Where logs and data go; a fresh temporary folder if unset.
    pub work_dir: Option<PathBuf>,
    /// Keep the work folder even when the run passes.
    pub keep: bool,
}

/// The service's database in the run's own cluster.
pub const DATABASE: &str = "kafkaesque";
/// The service's topic, which the API creates.
pub const TOPIC: &str = "chaos-updates";
/// Partitions of the run's topic.
const PARTITIONS: usize = 8;
/// How long the API has to answer `/readyz` after it starts, and the consumers to create the
/// first subscriptions.
pub const READY_LIMIT: Duration = Duration::from_secs(90);

/// Everything a run started. Dropping it stops it all: the processes are killed, the clusters
/// stopped.
#[derive(Debug)]
pub struct Rig {
    pub db: postgres::Cluster,
    pub broker: broker::Cluster,
    /// The service's topic, as the cluster's metadata shows it.
    pub topic: Topic,
    pub service: Service,
    /// The admin token the service was given.
    pub token: String,
}

impl Rig {
    pub async fn bring_up(
        o: &Options,
        profile: &Profile,
        work: &Path,
        progress: &Progress,
    ) -> Result<Rig> {
        let logs_dir = work.join("logs");
        let bin = o.pg_bin.clone().or_else(postgres::find_bin_dir).ok_or_else(|| {
            Error::Setup("no PostgreSQL server programs under /usr/lib/postgresql: run `scripts/db ensure` (installs Debian's postgresql)".into())
        })?;
        let db = postgres::Cluster::create(&bin, &work.join("pg-service")).await?;
        progress.line(format_args!(
            "PostgreSQL of the service on port {}",
            db.port()
        ));
        let broker = broker::Cluster::start(
            &o.broker_script,
            profile.brokers,
            &work.join("kafka"),
            logs_dir.join("broker.log"),
        )
        .await?;
        progress.line(format_args!(
            "Kafka, {} node(s), at {} (state in {})",
            broker.nodes(),
            broker.bootstrap(),
            work.join("kafka").display()
        ));

        let token = format!("chaos-{}", uuid::Uuid::new_v4());
        let mut vars: Vec<(String, String)> = vec![
            ("KAFKA_BROKERS".into(), broker.bootstrap().to_owned()),
            ("DATABASE_URL".into(), db.url(DATABASE)),
            ("KAFKAESQUE_ADMIN_TOKEN".into(), token.clone()),
            ("KAFKAESQUE_TOPIC".into(), TOPIC.into()),
            ("KAFKAESQUE_PARTITIONS".into(), PARTITIONS.to_string()),
            ("KAFKAESQUE_GROUP".into(), "chaos".into()),
            (
                "KAFKAESQUE_CONCURRENCY".into(),
                profile.concurrency.to_string(),
            ),
            ("RUST_LOG".into(), logs::FILTER.into()),
            // The chaos run sends 50-200 updates/s per app and re-sends on 503: no rate limit or
            // cap of the edge may refuse it, whatever the defaults become.
            ("KAFKAESQUE_RATE_LIMIT_PER_SECOND".into(), "1000000".into()),
            ("KAFKAESQUE_RATE_LIMIT_BURST".into(), "1000000".into()),
            ("KAFKAESQUE_MAX_REQUESTS_IN_FLIGHT".into(), "100000".into()),
        ];
        // On three nodes the service replicates its topic three times, two in sync, by itself;
        // on one it must be told that a single copy is all there is.
        if broker.nodes() == 1 {
            vars.push(("KAFKAESQUE_SINGLE_NODE_BROKER".into(), "true".into()));
        }
        let mut service = Service::start(o.binary.clone(), Env { vars }, logs_dir.clone())?;
        wait_ready(&service.api_url).await?;
        let topic = Topic::new(broker.bootstrap(), TOPIC)?;
        history::install(&postgres::connect(&db.url(DATABASE)).await?).await?;
        for _ in 0..profile.consumers {
            service.join()?;
        }
        Ok(Rig {
            db,
            broker,
            topic,
            service,
            token,
        })
    }
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
