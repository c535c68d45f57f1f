//! Carrying out the schedule's faults on the rig, and watching the processes in between.

use std::time::{Duration, Instant};

use crate::metadata::Partition;
use crate::progress::Progress;
use crate::rig::Rig;
use crate::schedule::Fault;
use crate::verdict::{Hit, Verdict};
use crate::{Error, Result};

/// How long the replicas have to be back in sync after a broker fault.
const RESYNC_LIMIT: Duration = Duration::from_secs(120);

/// Waits until `deadline`, checking every second for processes that ended on their own.
pub async fn watch_until(deadline: Instant, rig: &mut Rig, progress: &Progress) -> Result<()> {
    loop {
        for crash in rig.service.reap()? {
            progress.line(format_args!(
                "{} ended on its own ({}); replaced",
                crash.name, crash.how
            ));
        }
        if let Some(how) = rig.broker.exited() {
            return Err(Error::Setup(format!("a broker ended on its own: {how}")));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
    }
}

/// Carries out one fault; returns when it is over (a broker fault: when every replica is back
/// in sync, so that the next one cannot take the last in-sync copy of a partition).
pub async fn fault(
    f: &Fault,
    rig: &mut Rig,
    verdict: &mut Verdict,
    progress: &Progress,
) -> Result<()> {
    let service = &mut rig.service;
    match f {
        Fault::Kill { pick } => {
            let (killed, started) = service.kill(*pick).await?;
            verdict.kills += 1;
            progress.line(format_args!("SIGKILL {killed}; started {started}"));
        }
        Fault::Join => {
            let name = service.join()?;
            verdict.joins += 1;
            progress.line(format_args!("{name} joins the group"));
        }
        Fault::Leave => {
            let (name, clean) = service.leave().await?;
            verdict.leaves += 1;
            progress.line(format_args!(
                "{name} left the group ({})",
                if clean { "clean" } else { "needed SIGKILL" }
            ));
        }
        Fault::FreezeBroker(d) => {
            let busiest = rig.topic.busiest().await?;
            let node = leader(&busiest, rig.broker.nodes())?;
            progress.line(format_args!(
                "node {node} (leader of partition {}) frozen (SIGSTOP) for {d:?}",
                busiest.id
            ));
            rig.broker.freeze(node, *d).await?;
            verdict.broker_freeze = Some(Hit {
                node,
                partition: busiest.id,
                took: *d,
            });
            progress.line(format_args!("node {node} thawed (SIGCONT)"));
        }
        Fault::RestartBroker(down) => {
            progress.line(format_args!(
                "every broker node stopping, to be down for {down:?}, then started again"
            ));
            let t = Instant::now();
            rig.broker.stop().await?;
            tokio::time::sleep(*down).await;
            rig.broker.start_missing().await?;
            verdict.broker_restarts += 1;
            verdict.broker_restart_took = Some(t.elapsed());
            progress.line(format_args!(
                "brokers back after {:.1} s",
                t.elapsed().as_secs_f64()
            ));
        }
        Fault::KillLeader(down) => {
            let busiest = rig.topic.busiest().await?;
            let node = leader(&busiest, rig.broker.nodes())?;
            let t = Instant::now();
            rig.broker.kill(node).await?;
            progress.line(format_args!(
                "SIGKILL node {node} (leader of partition {}); down for {down:?}",
                busiest.id
            ));
            tokio::time::sleep(*down).await;
            rig.broker.start_missing().await?;
            verdict.leader_kills.push(Hit {
                node,
                partition: busiest.id,
                took: t.elapsed(),
            });
            progress.line(format_args!(
                "node {node} back after {:.1} s",
                t.elapsed().as_secs_f64()
            ));
        }
        Fault::RollingRestart => {
            for node in 1..=rig.broker.nodes() {
                let t = Instant::now();
                let clean = rig.broker.stop_node(node).await?;
                rig.broker.start_missing().await?;
                let synced = rig.topic.wait_in_sync(RESYNC_LIMIT).await;
                verdict.rolling_restart.push(t.elapsed());
                progress.line(format_args!(
                    "rolling restart: node {node} stopped ({}), started, {} after {:.1} s",
                    if clean { "clean" } else { "needed SIGKILL" },
                    if synced { "in sync" } else { "NOT in sync" },
                    t.elapsed().as_secs_f64()
                ));
            }
        }
        Fault::StopDatabase(d) => {
            rig.db.stop().await?;
            let t = Instant::now();
            progress.line(format_args!("PostgreSQL stopped for {d:?}"));
            tokio::time::sleep(*d).await;
            rig.db.start().await?;
            verdict.database_outage = Some(t.elapsed());
            progress.line(format_args!(
                "PostgreSQL back after {:.1} s",
                t.elapsed().as_secs_f64()
            ));
        }
    }
    if f.on_brokers() {
        let t = Instant::now();
        if rig.topic.wait_in_sync(RESYNC_LIMIT).await {
            progress.line(format_args!(
                "every replica in sync again ({:.1} s)",
                t.elapsed().as_secs_f64()
            ));
        } else {
            let note =
                format!("after {f:?}, the replicas were not all in sync within {RESYNC_LIMIT:?}");
            progress.line(&note);
            verdict.notes.push(note);
        }
    }
    Ok(())
}

/// The node leading `p` (node ids are 1 to `nodes`).
fn leader(p: &Partition, nodes: u32) -> Result<u32> {
    u32::try_from(p.leader)
        .ok()
        .filter(|n| (1..=nodes).contains(n))
        .ok_or_else(|| Error::Setup(format!("partition {} has no leader ({})", p.id, p.leader)))
}
