//! One chaos run, start to verdict: bring up the rig, send traffic while the schedule's faults
//! happen, wait for the consumers to catch up, check, tear down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::faults::{fault, watch_until};
use crate::progress::Progress;
use crate::rig::{Options, Rig, DATABASE, READY_LIMIT, TOPIC};
use crate::schedule::Schedule;
use crate::service::epoch_ms;
use crate::traffic::{self, Sent};
use crate::verdict::Verdict;
use crate::{history, logs, ownership, verify, Error, Profile, Result};

/// Runs the whole thing and returns the verdict; `Err` only when the rig could not be set up.
pub async fn run(o: Options) -> Result<Verdict> {
    let progress = Progress::default();
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
    progress.line(format_args!("work folder {}", work.display()));

    let mut rig = Rig::bring_up(&o, &profile, &work, &progress).await?;
    let subs = traffic::set_up(
        &rig.service.api_url,
        &rig.token,
        profile.apps,
        profile.subscriptions,
    )
    .await?;
    let created: Vec<_> = subs.iter().map(|s| (s.clone(), Sent::default())).collect();
    if verify::catch_up(&rig.db.url(DATABASE), &created, READY_LIMIT)
        .await
        .is_none()
    {
        return Err(Error::Setup(format!(
            "the consumers did not create the {} subscriptions within {READY_LIMIT:?}; see {}",
            subs.len(),
            logs_dir.display()
        )));
    }
    progress.line(format_args!(
        "API and {} consumers up; {} subscriptions in {} apps",
        rig.service.consumers(),
        subs.len(),
        profile.apps
    ));

    let schedule = Schedule::new(&profile, o.seed);
    let mut verdict = Verdict {
        mode: if o.quick { "quick" } else { "full" },
        seed: o.seed,
        brokers: profile.brokers,
        ..Verdict::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(traffic::drive(
        rig.service.api_url.clone(),
        subs,
        profile.rate_per_subscription,
        stop.clone(),
    ));
    progress.line(format_args!(
        "traffic for {:.0} s or more, {} faults (seed {})",
        schedule.traffic.as_secs_f64(),
        schedule.steps.len(),
        o.seed
    ));
    let start = Instant::now();
    let traffic_began = epoch_ms();
    let mut most_consumers = rig.service.consumers();
    // A fault that took longer than the schedule thought moves the rest back: at least the
    // smallest gap after each fault, for the group to settle.
    let mut ended = start;
    for step in &schedule.steps {
        let at = (start + step.at).max(ended + profile.gap.0);
        watch_until(at, &mut rig, &progress).await?;
        fault(&step.fault, &mut rig, &mut verdict, &progress).await?;
        ended = Instant::now();
        most_consumers = most_consumers.max(rig.service.consumers());
    }
    let until = (start + schedule.traffic).max(ended + profile.warm_up);
    watch_until(until, &mut rig, &progress).await?;
    stop.store(true, Ordering::Relaxed);
    let traffic_ended = epoch_ms();
    let ledger = traffic
        .await
        .map_err(|e| Error::Setup(format!("the traffic task failed: {e}")))??;
    progress.line("traffic stopped; waiting for the consumers to catch up");
    verdict.caught_up = verify::catch_up(&rig.db.url(DATABASE), &ledger, profile.catch_up).await;
    rig.service.reap()?;

    let pg = crate::postgres::connect(&rig.db.url(DATABASE)).await?;
    let ids: Vec<_> = ledger.iter().map(|(s, _)| s.id).collect();
    let rows = verify::rows(&pg, &ids).await?;
    let writes = history::read(&pg).await?;
    // Closed before the cluster is stopped, which would cut it and log a warning.
    drop(pg);
    verdict.checks = verify::judge(&ledger, &rows, &writes, (traffic_began, traffic_ended));
    verdict.sent = ledger.iter().map(|(_, s)| s.requests).sum();
    verdict.resent = ledger
        .iter()
        .flat_map(|(_, s)| s.resends.values())
        .map(|r| u64::from(*r))
        .sum();
    verdict.resent_after_503 = ledger.iter().map(|(_, s)| s.unavailable).sum();
    verdict.group_concurrency = (most_consumers * profile.concurrency) as u64;
    rig.service.stop().await?;
    rig.broker.stop().await?;
    let service = &rig.service;
    verdict.logs = logs::read(&service.consumer_logs);
    verdict.unowned =
        ownership::longest(&service.consumer_logs, &service.ended, TOPIC).map(|mut u| {
            u.from_ms -= traffic_began;
            u
        });
    verdict.crashes = service.crashes.clone();
    verdict.took = progress.elapsed();
    drop(rig);
    if verdict.passed() && !o.keep {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        verdict
            .notes
            .push(format!("logs and data kept in {}", work.display()));
    }
    Ok(verdict)
}
