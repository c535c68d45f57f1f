//! `kafkaesque load`: realistic traffic against a running service, through its HTTP API or
//! straight into its topic, with a progress bar and a summary.
//!
//! - [`traffic`]: the scenarios, seeded;
//! - [`target`]: the API or the topic, and creating the apps and subscriptions first;
//! - [`drive`]: the open-loop schedule and the summary;
//! - [`abuse`]: the abuse run, a scenario with phases and figures of its own.

pub mod abuse;
pub mod drive;
mod lean;
pub mod target;
pub mod traffic;

use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kafkaesque_subscribers::config::{DEFAULT_DATABASE_URL, DEFAULT_KAFKA_BROKERS, DEFAULT_TOPIC};
use kafkaesque_subscribers::{producer, Config};

pub use drive::{Pace, Sent, Summary};
pub use traffic::{Scenario, Traffic};

/// The load generator's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The traffic: `uniform`, `incident` (the first app links most of its subscriptions to
    /// one email address and floods them with contradictory updates), or `abuse` (one app floods
    /// at ten times --app-limit and a stranger with bad keys, beside five apps at 50 updates/s;
    /// --duration seconds quiet, then as long flooded, --rounds times; needs --database-url to see the rows).
    #[arg(long, value_enum, default_value = "uniform")]
    pub scenario: Scenario,
    /// Updates per second; 0 sends as fast as --in-flight allows.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// The service's per-app rate limit, requests per second (`abuse`: the service must be
    /// started with it, e.g. --rate-limit-per-second 200 --rate-limit-burst 200).
    #[arg(long, default_value_t = 200.0)]
    pub app_limit: f64,
    /// Seconds to send for (`abuse`: of each phase).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// `abuse`: quiet and flooded phases run in turn, this many of each; the figures are the
    /// medians of the phases, so that one noisy phase cannot decide them.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Apps to create.
    #[arg(long, default_value_t = 10)]
    pub apps: usize,
    /// Subscriptions to create, over all apps (half of them the flooding app's in `incident`).
    #[arg(long, default_value_t = 2_000)]
    pub subscriptions: usize,
    /// Share of all updates sent by the flooding app in `incident`.
    #[arg(long, default_value_t = 0.5)]
    pub flood_share: f64,
    /// Seed of the traffic: the same seed sends the same updates in the same order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Updates sent but not yet answered, at most.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// The service's HTTP API.
    #[arg(long, env = "KAFKAESQUE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin token of the service, to create the apps (HTTP mode).
    #[arg(long, env = "KAFKAESQUE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Write into the topic with the service's producer instead of calling the API: for rates
    /// the HTTP edge cannot reach. Apps are then created in the database directly.
    #[arg(long)]
    pub direct: bool,
    /// Kafka bootstrap servers (--direct).
    #[arg(long, env = "KAFKA_BROKERS", default_value = DEFAULT_KAFKA_BROKERS)]
    pub kafka_brokers: String,
    /// A librdkafka property of the --direct producer and admin client, NAME=VALUE (repeatable):
    /// the service's Kafka security settings, e.g. security.protocol=SASL_SSL.
    #[arg(long = "kafka-set", value_parser = kafkaesque_subscribers::config::property)]
    pub kafka_properties: Vec<(String, String)>,
    /// The service's topic (--direct).
    #[arg(long, env = "KAFKAESQUE_TOPIC", default_value = DEFAULT_TOPIC)]
    pub topic: String,
    /// The service's database (--direct, and `abuse`, which reads the rows it wrote).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
}

/// What a load run found.
#[derive(Debug, Clone)]
pub enum Outcome {
    Traffic(Summary),
    Abuse(Box<abuse::AbuseReport>),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Traffic(s) => s.fmt(f),
            Outcome::Abuse(r) => r.fmt(f),
        }
    }
}

/// Creates the apps and subscriptions, sends the traffic, and sums up.
///
/// # Errors
/// When the target cannot be reached or refuses the setup.
pub async fn run(args: LoadArgs) -> Result<Outcome> {
    if args.scenario == Scenario::Abuse {
        let report = abuse::run(abuse::AbuseArgs {
            url: args.url.clone(),
            admin_token: args
                .admin_token
                .clone()
                .context("--admin-token (or KAFKAESQUE_ADMIN_TOKEN) is needed to create apps")?,
            database: kafkaesque_subscribers::db::parse(&args.database_url)
                .context("--database-url")?,
            app_limit: args.app_limit.max(1.0),
            duration: Duration::from_secs_f64(args.duration.max(1.0)),
            rounds: args.rounds.max(1),
        })
        .await?;
        return Ok(Outcome::Abuse(Box::new(report)));
    }
    run_traffic(args).await.map(Outcome::Traffic)
}

async fn run_traffic(args: LoadArgs) -> Result<Summary> {
    let incident = args.scenario == Scenario::Incident;
    let counts = target::split(args.apps, args.subscriptions, incident);
    let pace = Pace {
        rate: args.rate.max(0.0),
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        in_flight: args.in_flight.max(1),
    };
    let progress = progress_bar(&pace);
    progress.set_message("creating apps and subscriptions");
    let (sent, elapsed) = if args.direct {
        let (database, database_tls) =
            kafkaesque_subscribers::db::parse(&args.database_url).context("--database-url")?;
        let config = Config {
            kafka_brokers: args.kafka_brokers.clone(),
            kafka_properties: args.kafka_properties.clone(),
            database,
            database_tls,
            topic: args.topic.clone(),
            ..Config::default()
        };
        producer::ensure_topic(&config).await?;
        let (target, apps, _) = target::DirectTarget::setup(&config, &counts).await?;
        let mut traffic = Traffic::new(args.scenario, apps, args.flood_share, args.seed);
        progress.set_message("sending");
        let start = std::time::Instant::now();
        let sent = drive::drive(&mut traffic, pace, |p| target.send(p), &progress).await;
        (sent, start.elapsed())
    } else {
        let token = args
            .admin_token
            .as_deref()
            .context("--admin-token (or KAFKAESQUE_ADMIN_TOKEN) is needed to create apps")?;
        let (target, apps) = target::HttpTarget::setup(&args.url, token, &counts).await?;
        let mut traffic = Traffic::new(args.scenario, apps, args.flood_share, args.seed);
        progress.set_message("sending");
        let start = std::time::Instant::now();
        let sent = drive::drive(&mut traffic, pace, |p| target.send(p), &progress).await;
        (sent, start.elapsed())
    };
    progress.finish_and_clear();
    Ok(Summary::of(&sent, elapsed))
}

/// A bar towards the updates the schedule will send, or a counter when the rate is open.
fn progress_bar(pace: &Pace) -> ProgressBar {
    if pace.rate > 0.0 {
        let bar = ProgressBar::new((pace.rate * pace.duration.as_secs_f64()) as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
            )
            .expect("a valid template"),
        );
        bar
    } else {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{msg} [{elapsed_precise}] {pos} ({per_sec})")
                .expect("a valid template"),
        );
        bar
    }
}
