//! The HTTP edge: acknowledged updates per second, and their p50/p99 latency, under a
//! keep-alive load from the load generator — next to the same server's `/healthz`, the ceiling
//! of the HTTP stack on this machine. Target: ≥ 20,000 updates/s with p99 ≤ 25 ms, or an account
//! of what bounds it.
//!
//! The server runs the API role only (the consumer would compete for the same two cores), and
//! the load generator runs in the same process: on this machine the client's cost is part of
//! what the figures show, for `/healthz` and the updates alike.

use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::ProgressBar;
use kafkaesque_subscribers::Roles;

use crate::load::drive::{drive, Pace, Summary};
use crate::load::target::{split, HttpTarget};
use crate::load::traffic::{Scenario, Traffic};
use crate::report::Figure;
use crate::rig::{Rig, ADMIN_TOKEN};

const C: &str = "HTTP edge";

/// `reps` interleaved runs of `seconds` each, updates then `/healthz`, `connections` requests in
/// flight.
///
/// # Errors
/// When the service cannot start or refuses the set-up.
pub async fn run(rig: &Rig, seconds: f64, connections: usize, reps: usize) -> Result<Vec<Figure>> {
    let env = rig.service_env("bench-http", 8).await?;
    let service = env.start(Roles::API).await?;
    let base = service.base_url();
    let (target, apps) = HttpTarget::setup(&base, ADMIN_TOKEN, &split(10, 1_000, false)).await?;
    let mut traffic = Traffic::new(Scenario::Uniform, apps, 0.0, 5);
    let pace = Pace {
        rate: 0.0,
        duration: Duration::from_secs_f64(seconds),
        in_flight: connections,
    };
    let health = reqwest::Client::new();
    let healthz = format!("{base}/healthz");
    let (mut updates, mut healths) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        let sent = drive(
            &mut traffic,
            pace,
            |p| target.send(p),
            &ProgressBar::hidden(),
        )
        .await;
        updates.push(Summary::of(&sent, start.elapsed()));
        let start = Instant::now();
        let sent = drive(
            &mut traffic,
            pace,
            |_| {
                let request = health.get(&healthz);
                async move {
                    match request.send().await {
                        Ok(r) if r.status().is_success() => Ok(None),
                        Ok(r) => Err(r.status().as_u16().to_string()),
                        Err(_) => Err("transport".to_owned()),
                    }
                }
            },
            &ProgressBar::hidden(),
        )
        .await;
        healths.push(Summary::of(&sent, start.elapsed()));
    }
    service.stop().await?;
    let errors: usize = updates.iter().flat_map(|s| s.errors.values()).sum();
    let rates = |v: &[Summary]| v.iter().map(|s| s.rate).collect::<Vec<_>>();
    let health = Figure::new(C, "/healthz", "requests/s", rates(&healths)).note(format!(
        "{connections} keep-alive requests in flight, {seconds:.0} s per run, client in the same \
         process on the same 2 cores"
    ));
    let rate = Figure::new(
        C,
        "PUT /api/v1/players/{id}",
        "acknowledged/s",
        rates(&updates),
    )
    .at_least("≥ 20,000/s", 20_000.0)
    .note(format!("{errors} failed requests over all runs"));
    let ratio = Figure {
        variant: "updates vs /healthz".into(),
        ..rate.clone()
    }
    .vs(&health);
    let ratio = Figure {
        target: None,
        note: None,
        ..ratio
    };
    let p50 = Figure::new(
        C,
        "updates p50 latency",
        "ms",
        updates.iter().map(|s| s.p50_ms).collect(),
    );
    let p99 = Figure::new(
        C,
        "updates p99 latency",
        "ms",
        updates.iter().map(|s| s.p99_ms).collect(),
    )
    .at_most("≤ 25 ms", 25.0);
    let health_p99 = Figure::new(
        C,
        "/healthz p99 latency",
        "ms",
        healths.iter().map(|s| s.p99_ms).collect(),
    );
    Ok(vec![health, rate, ratio, p50, p99, health_p99])
}
