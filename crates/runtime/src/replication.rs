//! How the topics this library creates (dead-letter and overflow topics; the service's own topic
//! too) are replicated.
//!
//! **Why it is a setting with a cluster-sized default.** A dead letter or a diverted record is a
//! record the consumer has committed past: the topic it went to is then its only copy. On a
//! replicated cluster it must be as durable as the source topic, so the default follows the
//! cluster: a replication factor of min(3, brokers) and, where that is 3 or more,
//! `min.insync.replicas` 2, so that an acknowledged write survives the loss of any one broker.
//! On a one-node development broker the default is one copy, which is all there is.

use rdkafka::admin::{NewTopic, TopicReplication};

/// The replication of created topics; `None` fields follow the cluster (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replication {
    /// Copies of each partition.
    pub factor: Option<i32>,
    /// In-sync copies an `acks=all` write needs before it is acknowledged.
    pub min_insync: Option<i32>,
}

/// A [`Replication`] resolved against a cluster of a known size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Copies of each partition.
    pub factor: i32,
    /// In-sync copies an `acks=all` write needs.
    pub min_insync: i32,
    /// `min_insync` as the topic config value, kept so a [`NewTopic`] can borrow it.
    min_insync_value: String,
}

impl Replication {
    /// The factor and minimum in-sync replicas for a cluster of `brokers` brokers.
    pub fn resolve(&self, brokers: usize) -> Resolved {
        let brokers = i32::try_from(brokers.max(1)).unwrap_or(i32::MAX);
        let factor = self.factor.unwrap_or(brokers.min(3));
        let min_insync = self.min_insync.unwrap_or(if factor >= 3 { 2 } else { 1 });
        Resolved {
            factor,
            min_insync,
            min_insync_value: min_insync.to_string(),
        }
    }
}

impl Resolved {
    /// A topic to create with this replication.
    pub fn new_topic<'a>(&'a self, name: &'a str, partitions: i32) -> NewTopic<'a> {
        NewTopic::new(name, partitions, TopicReplication::Fixed(self.factor))
            .set("min.insync.replicas", &self.min_insync_value)
    }

    /// Whether an acknowledged write can exist on one broker alone.
    pub fn single_copy(&self) -> bool {
        self.factor < 2 || self.min_insync < 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_the_cluster_up_to_three_copies_and_two_in_sync() {
        let default = Replication::default();
        let of = |brokers| {
            let r = default.resolve(brokers);
            (r.factor, r.min_insync)
        };
        assert_eq!(of(0), (1, 1));
        assert_eq!(of(1), (1, 1));
        assert_eq!(of(2), (2, 1));
        assert_eq!(of(3), (3, 2));
        assert_eq!(of(7), (3, 2));
        assert!(default.resolve(1).single_copy());
        assert!(!default.resolve(5).single_copy());
    }

    #[test]
    fn settings_override_the_default() {
        let set = Replication {
            factor: Some(5),
            min_insync: Some(3),
        };
        let r = set.resolve(1);
        assert_eq!((r.factor, r.min_insync), (5, 3));
        let factor_only = Replication {
            factor: Some(2),
            min_insync: None,
        };
        assert_eq!(factor_only.resolve(9).min_insync, 1);
    }
}
