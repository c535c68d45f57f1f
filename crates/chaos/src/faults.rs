//! Carrying out the schedule's faults on the rig, and watching the processes in between.

use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::postgres::Cluster;
use crate::schedule::Fault;
use crate::service::Service;
use crate::verdict::Verdict;
use crate::{Error, Result};

/// Progress lines for the person watching, with the time since the run began.
#[derive(Debug)]
pub struct Say(Instant);

impl Default for Say {
    fn default() -> Say {
        Say(Instant::now())
    }
}

impl Say {
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    pub fn line(&self, what: impl std::fmt::Display) {
        println!("chaos [{:6.1}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

/// Waits until `deadline`, checking every second for processes that ended on their own.
pub async fn watch_until(
    deadline: Instant,
    service: &mut Service,
    broker: &mut Broker,
    say: &Say,
) -> Result<()> {
    loop {
        for crash in service.reap()? {
            say.line(format_args!(
                "{} ended on its own ({}); replaced",
                crash.name, crash.how
            ));
        }
        if let Some(how) = broker.exited() {
            return Err(Error::Setup(format!("the broker ended on its own ({how})")));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
    }
}

pub async fn fault(
    f: &Fault,
    service: &mut Service,
    broker: &mut Broker,
    db: &Cluster,
    verdict: &mut Verdict,
    say: &Say,
) -> Result<()> {
    match f {
        Fault::Kill { pick } => {
            let (killed, started) = service.kill(*pick).await?;
            verdict.kills += 1;
            say.line(format_args!("SIGKILL {killed}; started {started}"));
        }
        Fault::Join => {
            let name = service.join()?;
            verdict.joins += 1;
            say.line(format_args!("{name} joins the group"));
        }
        Fault::Leave => {
            let (name, clean) = service.leave().await?;
            verdict.leaves += 1;
            say.line(format_args!(
                "{name} left the group ({})",
                if clean { "clean" } else { "needed SIGKILL" }
            ));
        }
        Fault::FreezeBroker(d) => {
            say.line(format_args!("broker frozen (SIGSTOP) for {d:?}"));
            broker.freeze(*d).await?;
            verdict.broker_freeze = Some(*d);
            say.line("broker thawed (SIGCONT)");
        }
        Fault::RestartBroker(down) => {
            say.line(format_args!(
                "broker stopping, to be down for {down:?}, then restarted on durable storage"
            ));
            let t = Instant::now();
            broker.restart(*down).await?;
            verdict.broker_restarts += 1;
            verdict.broker_restart_took = Some(t.elapsed());
            say.line(format_args!(
                "broker back after {:.1} s",
                t.elapsed().as_secs_f64()
            ));
        }
        Fault::StopDatabase(d) => {
            db.stop().await?;
            let t = Instant::now();
            say.line(format_args!("PostgreSQL stopped for {d:?}"));
            tokio::time::sleep(*d).await;
            db.start().await?;
            verdict.database_outage = Some(t.elapsed());
            say.line(format_args!(
                "PostgreSQL back after {:.1} s",
                t.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(())
}
