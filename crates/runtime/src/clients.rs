//! The librdkafka configuration of each client a consumer makes: the group consumer, the
//! overflow consumer, the dead-letter/overflow producer and the admin client.
//!
//! Every property given to [`ConsumerBuilder::set`](crate::ConsumerBuilder::set) reaches every
//! client it applies to: security, `debug`, `client.id`, socket and broker settings alike. Why
//! filter at all: librdkafka ignores a consumer property on a producer (and the reverse) with a
//! warning in the log, so a consumer-only setting given to the producer would only be noise,
//! and one client's role-specific settings (`group.instance.id`) would be wrong on another.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;

use crate::config::{is_pattern, ConsumerConfig};
use crate::{Error, Result};

/// Which client a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The group consumer, the only one with the user's `group.instance.id`.
    Group,
    /// The consumer of the overflow topics, in the group `<group>.overflow`.
    Overflow,
    /// The dead-letter and overflow producer.
    Sinks,
    /// The admin and metadata client that prepares the topics.
    Admin,
}

impl Role {
    /// What this client's `client.id` ends with, after the user's (or librdkafka's default
    /// `rdkafka`): each client has an id of its own, so broker logs, quotas and librdkafka's
    /// statistics tell them apart.
    fn client_id_suffix(self) -> &'static str {
        match self {
            Role::Group => "",
            Role::Overflow => "-overflow",
            Role::Sinks => "-sinks",
            Role::Admin => "-admin",
        }
    }
}

/// Properties only a consumer reads (librdkafka's CONFIGURATION.md, scope `C`).
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// Properties only a producer reads (scope `P`). The sinks producer takes them, except the
/// three it must keep for its guarantees (see [`SINKS_FIXED`]).
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
];

/// What the sinks producer keeps whatever the user sets: the overflow's per-key order and
/// "complete only when acknowledged" rest on an idempotent producer with `acks=all`.
const SINKS_FIXED: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("request.required.acks", "all"),
];

/// Properties the library sets per client and never copies from one to another:
/// `client.id` (suffixed per client), `group.id` (the builder's `group_id`, or
/// `<group>.overflow`), `group.instance.id` (the group consumer only: static membership is
/// the main group's), `transactional.id` (a transactional producer's alone: two clients with
/// one id fence each other).
const PER_CLIENT: &[&str] = &[
    "client.id",
    "group.id",
    "group.instance.id",
    "transactional.id",
];

/// The librdkafka configuration of the client in `role`.
pub(crate) fn client_config(cfg: &ConsumerConfig, role: Role) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    match role {
        Role::Group => consumer_defaults(&mut c, cfg, &cfg.group_id),
        Role::Overflow => consumer_defaults(&mut c, cfg, &format!("{}.overflow", cfg.group_id)),
        Role::Sinks => {
            c.set("linger.ms", "5");
        }
        Role::Admin => {}
    }
    for (k, v) in &cfg.properties {
        let k = k.as_str();
        let applies = match role {
            Role::Group | Role::Overflow => !PRODUCER_ONLY.contains(&k),
            Role::Sinks => !CONSUMER_ONLY.contains(&k),
            Role::Admin => !CONSUMER_ONLY.contains(&k) && !PRODUCER_ONLY.contains(&k),
        };
        if applies && !PER_CLIENT.contains(&k) {
            c.set(k, v);
        }
    }
    if role == Role::Sinks {
        for (k, v) in SINKS_FIXED {
            c.set(*k, *v);
        }
    }
    let client_id = property(cfg, "client.id").unwrap_or("rdkafka");
    c.set(
        "client.id",
        format!("{client_id}{}", role.client_id_suffix()),
    );
    if role == Role::Group {
        if let Some(id) = property(cfg, "group.instance.id") {
            c.set("group.instance.id", id);
        }
    }
    c
}

/// Checks every client's configuration as librdkafka would, so that a misspelt property or a
/// bad value for any of them is refused by `build`, by name. librdkafka checks names and values
/// when a client is created; no connection is made until a consumer subscribes or a request is
/// sent.
pub(crate) fn check(cfg: &ConsumerConfig) -> Result<()> {
    if cfg.properties.iter().any(|(k, _)| k == "group.id") {
        return Err(Error::config(
            "group.id",
            "set the group with `group_id`: the overflow consumer's group is derived from it",
        ));
    }
    for role in [Role::Group, Role::Overflow, Role::Admin] {
        client_config(cfg, role)
            .create::<BaseConsumer>()
            .map_err(property_error)?;
    }
    client_config(cfg, Role::Sinks)
        .create::<BaseProducer>()
        .map_err(property_error)?;
    Ok(())
}

/// Turns librdkafka's complaint about a property into an error naming it.
fn property_error(e: KafkaError) -> Error {
    let msg = e.to_string();
    let field = msg
        .split('"')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_else(|| "properties".into());
    Error::config(field, msg)
}

/// The last value the user gave `name`.
pub(crate) fn property<'a>(cfg: &'a ConsumerConfig, name: &str) -> Option<&'a str> {
    cfg.properties
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What a consumer of this library needs of librdkafka, before the user's properties (which
/// may override any of it).
fn consumer_defaults(c: &mut ClientConfig, cfg: &ConsumerConfig, group: &str) {
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        // librdkafka's default (1 s) idles a partition's fetcher for a whole second whenever
        // its local queue is full, which a consumer that holds work back hits all the time.
        .set("fetch.queue.backoff.ms", "20")
        // Every partition has a queue of its own (see `feeds`), and this cap then applies to
        // each: librdkafka's default of 64 MiB per partition is more prefetch than a consumer
        // with memory caps of its own should hold on top of them.
        .set("queued.max.messages.kbytes", "8192");
    // librdkafka finds the topics a pattern comes to match at its metadata refresh, every five
    // minutes by default: too slow for a topic created on purpose for this consumer.
    if cfg.topics.iter().any(|t| is_pattern(t)) {
        c.set("topic.metadata.refresh.interval.ms", "5000");
    }
    // Under the classic group protocol, cooperative-sticky: a rebalance revokes only the
    // partitions that move, so the others keep their in-flight work. Under KIP-848
    // (`group.protocol=consumer`) the broker assigns, incrementally, and librdkafka refuses an
    // assignment strategy of the client's.
    let kip848 =
        property(cfg, "group.protocol").is_some_and(|v| v.eq_ignore_ascii_case("consumer"));
    // In exactly-once mode, an eager assignor: a revoke's final transaction carries the group's
    // generation, and under cooperative-sticky librdkafka revokes after the generation has moved
    // on, so the broker refuses it (ILLEGAL_GENERATION). An eager revoke comes before the
    // member rejoins, while its generation still holds; it revokes every partition, though.
    let strategy = if cfg.exactly_once {
        "range"
    } else {
        "cooperative-sticky"
    };
    if !kip848 {
        c.set("partition.assignment.strategy", strategy)
            // A crashed member's partitions sit unowned until its session times out:
            // librdkafka's 45 s default left them so for most of a minute after a SIGKILL.
            // Six seconds (the broker's default minimum) with a heartbeat every 1.5 s gives
            // them to the restarted or remaining members within about ten; heartbeats come
            // from librdkafka's own thread, so a busy driver does not miss them. Under KIP-848
            // the broker sets both (`group.consumer.session.timeout.ms`).
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1500");
    }
}

#[cfg(test)]
mod tests;
