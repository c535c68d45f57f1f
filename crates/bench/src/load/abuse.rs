//! `kafkaesque load --scenario abuse`: one app floods the HTTP edge at ten times its rate limit
//! and a stranger floods it with bad keys, while five other apps send 50 updates a second each —
//! and what the five see of it.
//!
//! The service must run with a low per-app limit, the one `--app-limit` names (200/s by default:
//! `kafkaesque serve --rate-limit-per-second 200 --rate-limit-burst 200`), so that the flood fits
//! the machine. Two phases of `--duration` seconds each, in turn, `--rounds` times:
//!
//! 1. **quiet**: the five apps alone — the baseline;
//! 2. **flooded**: the five apps as before, the flooding app at ten times the limit (updates of
//!    its own subscriptions with its valid key), and the stranger at 1,000 requests a second with
//!    bad keys (100 keys repeated, one request in ten with a key never seen before).
//!
//! The machine's other work moves a phase's p99 as much as the flood may: interleaved rounds
//! meet that work alike, and the figures are the medians over the rounds of each kind.
//!
//! **Acknowledged to visible.** Each of the five apps' updates writes a subscription no other
//! update of the run writes (created in the set-up, within the limit) and a `seq` tag unique to
//! it. A poller reads the rows still awaited from PostgreSQL every 5 ms, by primary key; an
//! update's delay is from its 200 to the first read that shows its `seq` (0 when the read came
//! first). After the traffic the run waits for the stragglers (a minute at most), then counts the
//! acknowledged updates that never appeared — lost — and checks that no update the flooding app
//! was refused was written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::HeaderValue;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use super::lean::{self, Put, Target};
use crate::stats::{median, quantile};

/// Apps at normal rates.
const APPS: usize = 5;
/// Updates per second of each of them.
const APP_RATE: f64 = 50.0;
/// The flooding app's rate, in multiples of its limit.
const FLOOD_FACTOR: f64 = 10.0;
/// The stranger's requests per second.
const STRANGER_RATE: f64 = 1_000.0;
/// Bad keys the stranger repeats; one request in ten has a new one.
const BAD_KEYS: usize = 100;
/// Subscriptions of the flooding app.
const FLOOD_ROWS: usize = 200;
/// Requests in flight, at most, per sender.
const IN_FLIGHT: usize = 256;
/// Kept-alive connections of each abuser.
const CONNECTIONS: usize = 8;
/// How often the poller reads the rows awaited.
const POLL: Duration = Duration::from_millis(5);
/// How long the run waits for acknowledged updates to appear after the traffic.
const DRAIN: Duration = Duration::from_secs(60);
/// `seq` tags of a phase: phase `k` of the five apps uses `k * SEQS_PER_PHASE ..`, the flooding
/// app's round `r` `FLOOD_SEQS + r * SEQS_PER_PHASE ..`, so no two updates share one.
const SEQS_PER_PHASE: i64 = 100_000_000;
const FLOOD_SEQS: i64 = 1_000_000_000_000;

/// What the abuse run needs.
#[derive(Debug, Clone)]
pub struct AbuseArgs {
    pub url: String,
    pub admin_token: String,
    /// The service's database, and how to reach it (`sslmode` in its URL).
    pub database: (tokio_postgres::Config, kafkaesque_subscribers::db::Tls),
    /// The service's per-app limit, requests per second.
    pub app_limit: f64,
    /// Seconds of each phase.
    pub duration: Duration,
    /// Quiet and flooded phases, this many of each, in turn.
    pub rounds: usize,
}

/// What the five apps saw in the phases of one kind, pooled, and each phase's p99.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Acknowledged to visible p99 of each round's phase, ms.
    pub round_p99_ms: Vec<f64>,
    pub statuses: BTreeMap<String, u64>,
    /// Acknowledged to visible, ms, sorted.
    pub visible_ms: Vec<f64>,
    /// Sent to acknowledged, ms, sorted.
    pub ack_ms: Vec<f64>,
    /// Acknowledged and never visible.
    pub lost: usize,
}

/// The run's figures.
#[derive(Debug, Clone)]
pub struct AbuseReport {
    pub args_limit: f64,
    pub duration: Duration,
    pub rounds: usize,
    pub quiet: Phase,
    pub flooded: Phase,
    pub flood: BTreeMap<String, u64>,
    pub stranger: BTreeMap<String, u64>,
    /// Updates the flooding app was refused that were written all the same.
    pub refused_written: usize,
    /// Subscriptions of the flooding app checked for them.
    pub flood_rows_checked: usize,
}

/// One of the five apps' updates.
#[derive(Debug, Clone)]
struct Normal {
    seq: i64,
    round: usize,
    flooded: bool,
    sent: Instant,
    acked: Option<Instant>,
    status: String,
}

/// The rows awaited and what became of every update.
#[derive(Debug, Default)]
struct Ledger {
    /// Row → the `seq` it is to show.
    awaited: HashMap<Uuid, i64>,
    /// `seq` → when the poller first saw it.
    seen: HashMap<i64, Instant>,
    normals: Vec<Normal>,
}

/// An app, its key and its subscriptions.
#[derive(Debug, Clone)]
struct App {
    id: Uuid,
    key: String,
    rows: Vec<Uuid>,
}

/// Sets up, runs both phases and checks the database.
///
/// # Errors
/// When the service or the database cannot be reached, or refuses the set-up.
pub async fn run(args: AbuseArgs) -> Result<AbuseReport> {
    let base = args.url.trim_end_matches('/').to_owned();
    let client = || {
        Client::builder()
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()
            .context("HTTP client")
    };
    let setup = client()?;
    let db = kafkaesque_subscribers::db::connect(&args.database.0, &args.database.1).await?;
    let half = (APP_RATE * args.duration.as_secs_f64()).ceil() as usize;
    let per_app = 2 * args.rounds * half + 10;
    eprintln!("abuse: creating {APPS} apps with {per_app} subscriptions each, and the flooder");
    let mut apps = Vec::new();
    for i in 0..=APPS {
        let created = setup
            .post(format!("{base}/api/v1/apps"))
            .bearer_auth(&args.admin_token)
            .json(&json!({ "name": format!("abuse-{i}") }))
            .send()
            .await
            .context("creating an app")?;
        if !created.status().is_success() {
            bail!("creating an app: {}", created.status());
        }
        let v: Value = created.json().await?;
        apps.push(App {
            id: serde_json::from_value(v["id"].clone()).context("app id")?,
            key: v["api_key"].as_str().context("api_key")?.to_owned(),
            rows: Vec::new(),
        });
    }
    let setup_rate = args.app_limit * 0.75;
    let rows = futures::future::try_join_all(apps.iter().enumerate().map(|(i, app)| {
        let n = if i == APPS { FLOOD_ROWS } else { per_app };
        create_rows(&setup, &base, app, n, setup_rate)
    }))
    .await?;
    for (app, rows) in apps.iter_mut().zip(rows) {
        app.rows = rows;
    }
    let total: usize = apps.iter().map(|a| a.rows.len()).sum();
    let ids: Vec<Uuid> = apps.iter().map(|a| a.id).collect();
    let deadline = Instant::now() + DRAIN;
    loop {
        let n: i64 = db
            .query_one(include_str!("../../sql/abuse_rows.sql"), &[&ids])
            .await?
            .get(0);
        if n as usize >= total {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of the {total} subscriptions were applied within {DRAIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flooder = apps.pop().expect("the flooder");

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let polling = Arc::new(AtomicBool::new(true));
    let poller = tokio::spawn(poll(db, Arc::clone(&ledger), Arc::clone(&polling)));
    let normal = Normals {
        client: client()?,
        base: base.clone(),
        apps: Arc::new(apps),
        ledger: Arc::clone(&ledger),
    };
    let refused = Arc::new(Mutex::new(HashSet::new()));
    let target = Target::resolve(&base).await?;
    // The abusers send from a runtime of their own, and through `lean` rather than reqwest:
    // sharing a runtime with the poller and the five apps, their thousands of requests a
    // second would delay the very reads and timestamps that measure the five apps, and the
    // figures would show the load generator, not the service.
    let attackers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("abusers")
        .enable_all()
        .build()
        .context("the abusers' runtime")?;
    let (mut flood_tally, mut stranger_tally) = (BTreeMap::new(), BTreeMap::new());
    for round in 0..args.rounds {
        let (n, of) = (round + 1, args.rounds);
        eprintln!("abuse: round {n} of {of}, quiet phase, {:?}", args.duration);
        normal
            .phase(round, false, 2 * round * half, args.duration)
            .await;
        eprintln!(
            "abuse: round {n} of {of}, flooded phase, {:?}",
            args.duration
        );
        let flooding = attackers.spawn(flood(
            target.clone(),
            flooder.clone(),
            round,
            args.app_limit * FLOOD_FACTOR,
            args.duration,
            Arc::clone(&refused),
        ));
        let strange = attackers.spawn(stranger(target.clone(), args.duration));
        normal
            .phase(round, true, (2 * round + 1) * half, args.duration)
            .await;
        add(
            &mut flood_tally,
            flooding.await.context("the flooding app")?,
        );
        add(&mut stranger_tally, strange.await.context("the stranger")?);
    }
    attackers.shutdown_background();
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        let waiting = {
            let l = ledger.lock().expect("ledger");
            l.normals
                .iter()
                .any(|n| n.acked.is_some() && !l.seen.contains_key(&n.seq))
        };
        if !waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    polling.store(false, Ordering::Relaxed);
    let db = poller.await.context("poller")??;
    let written: Vec<i64> = db
        .query(include_str!("../../sql/abuse_app_seqs.sql"), &[&flooder.id])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let refused = refused.lock().expect("refused");
    let refused_written = written.iter().filter(|s| refused.contains(s)).count();
    let ledger = ledger.lock().expect("ledger");
    Ok(AbuseReport {
        args_limit: args.app_limit,
        duration: args.duration,
        rounds: args.rounds,
        quiet: phase(&ledger, false, args.rounds),
        flooded: phase(&ledger, true, args.rounds),
        flood: flood_tally,
        stranger: stranger_tally,
        refused_written,
        flood_rows_checked: written.len(),
    })
}

/// Creates `n` subscriptions of `app` at `rate` a second, waiting out any 429.
async fn create_rows(
    client: &Client,
    base: &str,
    app: &App,
    n: usize,
    rate: f64,
) -> Result<Vec<Uuid>> {
    let start = Instant::now();
    stream::iter(0..n)
        .map(|i| async move {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            loop {
                let r = client
                    .post(format!("{base}/api/v1/players"))
                    .header("Authorization", format!("Key {}", app.key))
                    .json(&json!({ "app_id": app.id, "device_type": 1 }))
                    .send()
                    .await
                    .context("creating a subscription")?;
                match r.status() {
                    StatusCode::OK => {
                        let v: Value = r.json().await?;
                        let id: Uuid = serde_json::from_value(v["id"].clone())?;
                        return Result::<Uuid>::Ok(id);
                    }
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    status => bail!("creating a subscription: {status}"),
                }
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await
}

/// Reads the awaited rows until told to stop; gives the connection back.
async fn poll(
    db: tokio_postgres::Client,
    ledger: Arc<Mutex<Ledger>>,
    polling: Arc<AtomicBool>,
) -> Result<tokio_postgres::Client> {
    let statement = db.prepare(include_str!("../../sql/abuse_seqs.sql")).await?;
    while polling.load(Ordering::Relaxed) {
        let ids: Vec<Uuid> = ledger
            .lock()
            .expect("ledger")
            .awaited
            .keys()
            .copied()
            .collect();
        if !ids.is_empty() {
            let rows = db.query(&statement, &[&ids]).await?;
            let now = Instant::now();
            let mut l = ledger.lock().expect("ledger");
            for r in rows {
                let (id, seq): (Uuid, Option<i64>) = (r.get(0), r.get(1));
                if let Some(seq) = seq.filter(|s| l.awaited.get(&id) == Some(s)) {
                    l.awaited.remove(&id);
                    l.seen.insert(seq, now);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(db)
}

/// The five apps' traffic.
struct Normals {
    client: Client,
    base: String,
    apps: Arc<Vec<App>>,
    ledger: Arc<Mutex<Ledger>>,
}

impl Normals {
    /// `APP_RATE` updates a second per app for `duration`, each of a row of its own, starting at
    /// row `first` of each app.
    async fn phase(
        &self,
        round: usize,
        flooded: bool,
        first: usize,
        duration: Duration,
    ) -> BTreeMap<String, u64> {
        let seq0 = (2 * round + usize::from(flooded)) as i64 * SEQS_PER_PHASE;
        open_loop(APP_RATE * APPS as f64, duration, |i| {
            let i = i as usize;
            let app = &self.apps[i % APPS];
            let row = app.rows[first + i / APPS];
            let seq = seq0 + i as i64;
            self.ledger.lock().expect("ledger").awaited.insert(row, seq);
            let request = self
                .client
                .put(format!("{}/api/v1/players/{row}", self.base))
                .header("Authorization", format!("Key {}", app.key))
                .json(&json!({ "app_id": app.id, "tags": { "seq": seq.to_string() } }));
            let ledger = Arc::clone(&self.ledger);
            async move {
                let sent = Instant::now();
                let status = status_of(request.send().await).await;
                let acked = (status == "200").then(Instant::now);
                let mut l = ledger.lock().expect("ledger");
                if acked.is_none() {
                    l.awaited.remove(&row);
                }
                l.normals.push(Normal {
                    seq,
                    round,
                    flooded,
                    sent,
                    acked,
                    status: status.clone(),
                });
                status
            }
        })
        .await
    }
}

/// The flooding app: updates of its own subscriptions, each with a `seq` of its own; the seqs of
/// those refused go to `refused`.
async fn flood(
    target: Target,
    app: App,
    round: usize,
    rate: f64,
    duration: Duration,
    refused: Arc<Mutex<HashSet<i64>>>,
) -> BTreeMap<String, u64> {
    let key = header(&format!("Key {}", app.key));
    let seq0 = FLOOD_SEQS + round as i64 * SEQS_PER_PHASE;
    let make = |i: u64| Put {
        path: format!("/api/v1/players/{}", app.rows[i as usize % app.rows.len()]),
        key: key.clone(),
        body: format!(
            r#"{{"app_id":"{}","tags":{{"seq":"{}"}}}}"#,
            app.id,
            seq0 + i as i64
        )
        .into(),
    };
    let done = move |i: u64, status: &str| {
        if status != "200" {
            refused.lock().expect("refused").insert(seq0 + i as i64);
        }
    };
    lean::open_loop(&target, rate, duration, CONNECTIONS, IN_FLIGHT, make, done).await
}

/// The stranger: updates with bad keys, most of them repeated.
async fn stranger(target: Target, duration: Duration) -> BTreeMap<String, u64> {
    let keys: Vec<HeaderValue> = (0..BAD_KEYS)
        .map(|_| header(&format!("Key {}", Uuid::new_v4().simple())))
        .collect();
    let body: bytes::Bytes = format!(r#"{{"app_id":"{}","language":"en"}}"#, Uuid::new_v4()).into();
    let make = |i: u64| Put {
        path: format!("/api/v1/players/{}", Uuid::new_v4()),
        key: if i % 10 == 9 {
            header(&format!("Key {}", Uuid::new_v4().simple()))
        } else {
            keys[i as usize % BAD_KEYS].clone()
        },
        body: body.clone(),
    };
    lean::open_loop(
        &target,
        STRANGER_RATE,
        duration,
        CONNECTIONS,
        IN_FLIGHT,
        make,
        |_, _| {},
    )
    .await
}

/// An `Authorization` value made of hex digits and a scheme: always a valid header.
fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("hex digits and a space")
}

/// The status of an answer (its body read), or `transport`.
async fn status_of(response: reqwest::Result<reqwest::Response>) -> String {
    match response {
        Ok(r) => {
            let status = r.status().as_u16().to_string();
            let _ = r.bytes().await;
            status
        }
        Err(_) => "transport".to_owned(),
    }
}

/// Calls `send(i)` for update `i` at `start + i / rate` for `duration`, with at most `IN_FLIGHT`
/// unanswered; counts the outcomes.
async fn open_loop<F, Fut>(rate: f64, duration: Duration, mut send: F) -> BTreeMap<String, u64>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = String> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let tally = Arc::new(Mutex::new(BTreeMap::new()));
    let start = Instant::now();
    let mut i: u64 = 0;
    loop {
        let at = Duration::from_secs_f64(i as f64 / rate);
        if at >= duration {
            break;
        }
        tokio::time::sleep_until(start + at).await;
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let request = send(i);
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            let status = request.await;
            drop(permit);
            *tally.lock().expect("tally").entry(status).or_insert(0) += 1;
        });
        i += 1;
    }
    let _ = permits.acquire_many(IN_FLIGHT as u32).await;
    let tally = std::mem::take(&mut *tally.lock().expect("tally"));
    tally
}

fn phase(ledger: &Ledger, flooded: bool, rounds: usize) -> Phase {
    let mut p = Phase::default();
    let mut by_round = vec![Vec::new(); rounds];
    for n in ledger.normals.iter().filter(|n| n.flooded == flooded) {
        *p.statuses.entry(n.status.clone()).or_insert(0) += 1;
        let Some(acked) = n.acked else { continue };
        p.ack_ms.push(ms(acked - n.sent));
        match ledger.seen.get(&n.seq) {
            Some(seen) => {
                let visible = ms(seen.saturating_duration_since(acked));
                p.visible_ms.push(visible);
                by_round[n.round].push(visible);
            }
            None => p.lost += 1,
        }
    }
    p.visible_ms.sort_by(f64::total_cmp);
    p.ack_ms.sort_by(f64::total_cmp);
    p.round_p99_ms = by_round
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            quantile(&v, 0.99)
        })
        .collect();
    p
}

fn add(total: &mut BTreeMap<String, u64>, more: BTreeMap<String, u64>) {
    for (status, n) in more {
        *total.entry(status).or_insert(0) += n;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn count(statuses: &BTreeMap<String, u64>, status: &str) -> u64 {
    statuses.get(status).copied().unwrap_or(0)
}

fn others(statuses: &BTreeMap<String, u64>, known: &[&str]) -> String {
    let rest: Vec<String> = statuses
        .iter()
        .filter(|(s, _)| !known.contains(&s.as_str()))
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    if rest.is_empty() {
        "none".to_owned()
    } else {
        rest.join(", ")
    }
}

impl std::fmt::Display for AbuseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (q, fl) = (&self.quiet, &self.flooded);
        let secs = self.duration.as_secs_f64();
        let sent = |s: &BTreeMap<String, u64>| s.values().sum::<u64>();
        writeln!(
            f,
            "abuse run: limit {:.0} requests/s per app; {APPS} apps at {APP_RATE:.0} updates/s \
             each; {secs:.0} s quiet, then {secs:.0} s with one app flooding at {:.0}/s and a \
             stranger at {STRANGER_RATE:.0}/s with bad keys; {} rounds",
            self.args_limit,
            self.args_limit * FLOOD_FACTOR,
            self.rounds
        )?;
        writeln!(f)?;
        writeln!(f, "| the five apps | quiet baseline | flooded | ratio |")?;
        writeln!(f, "|---|---:|---:|---:|")?;
        writeln!(
            f,
            "| updates sent / acknowledged | {} / {} | {} / {} | |",
            sent(&q.statuses),
            count(&q.statuses, "200"),
            sent(&fl.statuses),
            count(&fl.statuses, "200")
        )?;
        let (a, b) = (median(&q.round_p99_ms), median(&fl.round_p99_ms));
        writeln!(
            f,
            "| **acknowledged to visible, p99, median of the rounds** | {a:.1} ms | {b:.1} ms | \
             **{:.2}×** |",
            b / a.max(1e-9)
        )?;
        let rounds = |p: &Phase| {
            let v: Vec<String> = p.round_p99_ms.iter().map(|x| format!("{x:.1}")).collect();
            v.join(", ")
        };
        writeln!(
            f,
            "| … p99 of each round, ms | {} | {} | |",
            rounds(q),
            rounds(fl)
        )?;
        for (name, quantile_of) in [("p50", 0.5), ("p99", 0.99)] {
            let (a, b) = (
                quantile(&q.visible_ms, quantile_of),
                quantile(&fl.visible_ms, quantile_of),
            );
            writeln!(
                f,
                "| acknowledged to visible, {name}, all rounds pooled | {a:.1} ms | {b:.1} ms | \
                 {:.2}× |",
                b / a.max(1e-9)
            )?;
        }
        for (name, quantile_of) in [("p50", 0.5), ("p99", 0.99)] {
            writeln!(
                f,
                "| sent to acknowledged, {name} | {:.1} ms | {:.1} ms | |",
                quantile(&q.ack_ms, quantile_of),
                quantile(&fl.ack_ms, quantile_of)
            )?;
        }
        writeln!(
            f,
            "| refused (429 / 503 / other) | {} / {} / {} | {} / {} / {} | |",
            count(&q.statuses, "429"),
            count(&q.statuses, "503"),
            others(&q.statuses, &["200", "429", "503"]),
            count(&fl.statuses, "429"),
            count(&fl.statuses, "503"),
            others(&fl.statuses, &["200", "429", "503"])
        )?;
        writeln!(
            f,
            "| acknowledged, never visible (lost) | {} | {} | |",
            q.lost, fl.lost
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| the abusers (flooded phase) | sent | 200 | 429 | 401 | 503 | other |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---|")?;
        for (who, s) in [
            ("flooding app (its own key)", &self.flood),
            ("stranger (bad keys)", &self.stranger),
        ] {
            writeln!(
                f,
                "| {who} | {} | {} | {} | {} | {} | {} |",
                sent(s),
                count(s, "200"),
                count(s, "429"),
                count(s, "401"),
                count(s, "503"),
                others(s, &["200", "429", "401", "503"])
            )?;
        }
        writeln!(f)?;
        write!(
            f,
            "flooding app's refused updates found written: {} (of {} of its subscriptions \
             checked in PostgreSQL)",
            self.refused_written, self.flood_rows_checked
        )
    }
}
