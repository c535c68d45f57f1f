//! The rig of one run, brought up from nothing: a PostgreSQL cluster for the service, the broker
//! (on a PostgreSQL cluster of its own when it will be restarted), the API and the consumers, and
//! the write history in the service's database.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::faults::Say;
use crate::postgres::{find_bin_dir, Cluster};
use crate::service::{Env, Service};
use crate::{history, logs, Error, Options, Profile, Result};

/// The service's database in the run's own cluster.
pub const DATABASE: &str = "kafkaesque";
/// Partitions of the run's topic.
const PARTITIONS: usize = 8;
/// How long the API has to answer `/readyz` after it starts, and the consumers to create the
/// first subscriptions.
pub const READY_LIMIT: Duration = Duration::from_secs(90);

/// Everything a run started. Dropping it stops it all: the processes are killed, the clusters
/// stopped.
#[derive(Debug)]
pub struct Rig {
    pub db: Cluster,
    /// The broker's storage, when it is durable.
    pub broker_db: Option<Cluster>,
    pub broker: Broker,
    pub service: Service,
    /// The admin token the service was given.
    pub token: String,
    /// Why the durable broker restart cannot happen, when it cannot.
    pub restart_skipped: Option<String>,
}

impl Rig {
    pub async fn bring_up(o: &Options, profile: &Profile, work: &Path, say: &Say) -> Result<Rig> {
        let logs_dir = work.join("logs");
        let bin = o.pg_bin.clone().or_else(find_bin_dir).ok_or_else(|| {
            Error::Setup("no PostgreSQL server programs under /usr/lib/postgresql: run `scripts/db ensure` (installs Debian's postgresql)".into())
        })?;
        let db = Cluster::create(&bin, &work.join("pg-service")).await?;
        say.line(format_args!(
            "PostgreSQL of the service on port {}",
            db.port()
        ));
        let (storage, broker_db, restart_skipped) = broker_storage(o, profile, &bin, work).await?;
        let broker = Broker::start(o.nisshi.clone(), storage, logs_dir.join("broker.log")).await?;
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
        Ok(Rig {
            db,
            broker_db,
            broker,
            service,
            token,
            restart_skipped,
        })
    }
}

/// The broker's storage: PostgreSQL (a cluster of its own, so the database outage does not
/// take the broker down with it) when the run restarts the broker and nisshi's schema is there;
/// memory otherwise, with the reason the restart is skipped.
async fn broker_storage(
    o: &Options,
    profile: &Profile,
    bin: &Path,
    work: &Path,
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
