//! The seeded schedule of faults: the same seed gives the same faults in the same order at the
//! same times, so a failing run can be repeated.
//!
//! Faults never overlap: each starts after the previous one has ended and the group had a gap
//! to settle, so the verdict can tell which fault a violation followed (the log says when each
//! started), and a consumer restarted after a kill never finds PostgreSQL down at its start.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::Profile;

/// One fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// SIGKILL a consumer (`pick` modulo the running ones) and start a new one in its place.
    Kill { pick: u64 },
    /// Start one more consumer in the group.
    Join,
    /// Stop the newest consumer cleanly (SIGTERM: it finishes, commits and leaves).
    Leave,
    /// SIGSTOP the node leading the busiest partition for this long, then SIGCONT.
    FreezeBroker(Duration),
    /// Stop every node, leave the cluster down this long, start it again on its storage.
    RestartBroker(Duration),
    /// SIGKILL the node leading the busiest partition, start it again after this long.
    KillLeader(Duration),
    /// Stop (SIGTERM) and start each node in turn, each back in sync before the next.
    RollingRestart,
    /// Stop PostgreSQL for this long, then start it again.
    StopDatabase(Duration),
}

impl Fault {
    /// About how long the fault lasts (what the schedule waits before the next gap). The run
    /// keeps the smallest gap after a fault that took longer.
    fn lasts(&self) -> Duration {
        match self {
            Fault::FreezeBroker(d) | Fault::StopDatabase(d) => *d,
            // A stop takes a few seconds, a start of the nodes about ten.
            Fault::RestartBroker(d) | Fault::KillLeader(d) => *d + Duration::from_secs(20),
            Fault::RollingRestart => Duration::from_secs(60),
            _ => Duration::ZERO,
        }
    }

    /// Whether the fault is done to the brokers (after which the run waits for every replica to
    /// be back in sync).
    pub fn on_brokers(&self) -> bool {
        matches!(
            self,
            Fault::FreezeBroker(_)
                | Fault::RestartBroker(_)
                | Fault::KillLeader(_)
                | Fault::RollingRestart
        )
    }
}

/// A fault and when it starts, from the start of the traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
}

/// Every fault of a run, in time order, and how long the traffic lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub steps: Vec<Step>,
    pub traffic: Duration,
}

impl Schedule {
    pub fn new(profile: &Profile, seed: u64) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut faults: Vec<Fault> = (0..profile.kills)
            .map(|_| Fault::Kill { pick: rng.gen() })
            .collect();
        faults.extend(profile.broker_freeze.map(Fault::FreezeBroker));
        faults.extend(profile.database_outage.map(Fault::StopDatabase));
        faults.extend(profile.broker_restart.map(Fault::RestartBroker));
        faults.extend((0..profile.leader_kills).map(|_| Fault::KillLeader(profile.leader_down)));
        if profile.rolling_restart {
            faults.push(Fault::RollingRestart);
        }
        faults.shuffle(&mut rng);
        // Joins and leaves alternate, each leave after its join (a leave removes the newest
        // consumer, so the group never shrinks below its start size), at random places among
        // the rest.
        for i in 0..profile.membership_changes {
            if i % 2 == 0 {
                let at = rng.gen_range(0..=faults.len());
                faults.insert(at, Fault::Join);
            } else {
                let join = faults.iter().rposition(|f| *f == Fault::Join).unwrap_or(0);
                let at = rng.gen_range(join + 1..=faults.len());
                faults.insert(at, Fault::Leave);
            }
        }
        let (low, high) = profile.gap;
        let mut t = profile.warm_up;
        let mut steps = Vec::new();
        for fault in faults {
            t += rng.gen_range(low..=high);
            let lasts = fault.lasts();
            steps.push(Step { at: t, fault });
            t += lasts;
        }
        Schedule {
            steps,
            traffic: t + profile.warm_up,
        }
    }

    /// Faults of one kind.
    pub fn count(&self, wanted: impl Fn(&Fault) -> bool) -> usize {
        self.steps.iter().filter(|s| wanted(&s.fault)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_every_fault_is_in_it() {
        let p = Profile::full();
        let a = Schedule::new(&p, 7);
        assert_eq!(a, Schedule::new(&p, 7));
        assert_ne!(a, Schedule::new(&p, 8));
        assert_eq!(a.count(|f| matches!(f, Fault::Kill { .. })), 10);
        assert_eq!(a.count(|f| *f == Fault::Join), 2);
        assert_eq!(a.count(|f| *f == Fault::Leave), 2);
        assert_eq!(a.count(|f| matches!(f, Fault::RestartBroker(_))), 1);
        assert_eq!(a.count(|f| matches!(f, Fault::FreezeBroker(_))), 1);
        assert_eq!(a.count(|f| matches!(f, Fault::StopDatabase(_))), 1);
        assert_eq!(a.count(|f| matches!(f, Fault::KillLeader(_))), 2);
        assert_eq!(a.count(|f| *f == Fault::RollingRestart), 1);
        assert!(a.steps.windows(2).all(|w| w[0].at < w[1].at));
        assert!(a.traffic > a.steps.last().unwrap().at);
    }

    #[test]
    fn a_leave_always_follows_a_join_so_the_group_never_shrinks_below_its_start() {
        for seed in 0..200 {
            let s = Schedule::new(&Profile::quick(), seed);
            let mut extra = 0i32;
            for step in &s.steps {
                match step.fault {
                    Fault::Join => extra += 1,
                    Fault::Leave => extra -= 1,
                    _ => {}
                }
                assert!(extra >= 0, "seed {seed}: {s:?}");
            }
        }
    }
}
