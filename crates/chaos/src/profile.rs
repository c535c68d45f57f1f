//! How big a run is: the full run, and the quick one the test suite keeps.

use std::time::Duration;

/// The sizes of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Apps the traffic is spread over. The topic is keyed by app, so this is how many
    /// partitions carry traffic (at most): enough that every consumer has work to lose.
    pub apps: usize,
    /// Subscriptions updated, spread over the apps.
    pub subscriptions: usize,
    /// Updates per second per subscription (each waits for the previous one's answer).
    pub rate_per_subscription: f64,
    /// Nodes of the run's Kafka cluster: 1 or 3.
    pub brokers: u32,
    /// Consumer processes in the group at the start.
    pub consumers: usize,
    /// Handlers running at once in each consumer (`KAFKAESQUE_CONCURRENCY`).
    pub concurrency: usize,
    /// SIGKILLs of a consumer, each followed by a restart.
    pub kills: usize,
    /// Consumers joining or leaving the group, alternately (a join first).
    pub membership_changes: usize,
    /// SIGSTOP of one node (the leader of the busiest partition) for this long (`None`: no
    /// freeze).
    pub broker_freeze: Option<Duration>,
    /// Stop the whole cluster once, down for this long, and start it again on its storage
    /// (`None`: no restart). Longer than the consumers' session timeout (6 s), so the group the
    /// cluster kept must be rejoined.
    pub broker_restart: Option<Duration>,
    /// SIGKILLs of the node leading the busiest partition, each down this long before it is
    /// started again (three nodes only: one node's death is the restart above).
    pub leader_kills: usize,
    pub leader_down: Duration,
    /// One rolling restart: each node in turn stopped (SIGTERM), started, and back in sync
    /// before the next (three nodes only).
    pub rolling_restart: bool,
    /// Stop of PostgreSQL for this long (`None`: no outage).
    pub database_outage: Option<Duration>,
    /// Traffic before the first fault and after the last.
    pub warm_up: Duration,
    /// Pause between one fault's end and the next one's start: at least, at most.
    pub gap: (Duration, Duration),
    /// How long the consumers have to apply everything after the traffic stops.
    pub catch_up: Duration,
}

impl Profile {
    /// The full run, on three brokers: ten kills, four joins and leaves, a 30 s freeze of a
    /// leader, two SIGKILLs of a leader, a rolling restart, a restart of the whole cluster and a
    /// 30 s database outage, under about 200 updates a second.
    pub fn full() -> Profile {
        Profile {
            apps: 8,
            subscriptions: 100,
            rate_per_subscription: 2.0,
            brokers: 3,
            consumers: 3,
            concurrency: 64,
            kills: 10,
            membership_changes: 4,
            broker_freeze: Some(Duration::from_secs(30)),
            broker_restart: Some(Duration::from_secs(10)),
            leader_kills: 2,
            leader_down: Duration::from_secs(10),
            rolling_restart: true,
            database_outage: Some(Duration::from_secs(30)),
            warm_up: Duration::from_secs(10),
            gap: (Duration::from_secs(8), Duration::from_secs(14)),
            catch_up: Duration::from_secs(300),
        }
    }

    /// The test suite's run, on one broker: three brokers take half a minute more to start and
    /// their faults (leader kills, a rolling restart) a minute more to play out, which the test
    /// suite cannot spare. Kills, a join and a leave, a 10 s freeze, a restart of the broker and
    /// a 10 s database outage, smaller.
    pub fn quick() -> Profile {
        Profile {
            apps: 4,
            subscriptions: 40,
            brokers: 1,
            kills: 3,
            membership_changes: 2,
            broker_freeze: Some(Duration::from_secs(10)),
            broker_restart: Some(Duration::from_secs(5)),
            leader_kills: 0,
            rolling_restart: false,
            database_outage: Some(Duration::from_secs(10)),
            warm_up: Duration::from_secs(5),
            gap: (Duration::from_secs(6), Duration::from_secs(9)),
            catch_up: Duration::from_secs(120),
            ..Profile::full()
        }
    }
}
