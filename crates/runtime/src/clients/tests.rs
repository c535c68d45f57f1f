use super::{check, client_config, Role};
use crate::config::ConsumerConfig;
use crate::ConsumerBuilder;

const ROLES: [Role; 4] = [Role::Group, Role::Overflow, Role::Sinks, Role::Admin];

fn config(props: &[(&str, &str)]) -> ConsumerConfig {
    let mut b = ConsumerBuilder::default().group_id("g").topics(["t"]);
    for (k, v) in props {
        b = b.set(*k, *v);
    }
    built(b).expect("a valid configuration")
}

/// What `ConsumerBuilder::build` checks.
fn built(b: ConsumerBuilder) -> crate::Result<ConsumerConfig> {
    let cfg = b.validate()?;
    check(&cfg)?;
    Ok(cfg)
}

fn get(cfg: &ConsumerConfig, role: Role, key: &str) -> Option<String> {
    client_config(cfg, role).get(key).map(str::to_owned)
}

#[test]
fn a_property_for_every_client_reaches_every_client() {
    let cfg = config(&[
        ("debug", "broker"),
        ("enable.ssl.certificate.verification", "false"),
        ("socket.keepalive.enable", "true"),
        ("security.protocol", "plaintext"),
    ]);
    for role in ROLES {
        assert_eq!(
            get(&cfg, role, "debug").as_deref(),
            Some("broker"),
            "{role:?}"
        );
        for key in [
            "enable.ssl.certificate.verification",
            "socket.keepalive.enable",
        ] {
            assert!(get(&cfg, role, key).is_some(), "{key} on {role:?}");
        }
        assert_eq!(
            get(&cfg, role, "security.protocol").as_deref(),
            Some("plaintext")
        );
    }
}

#[test]
fn each_client_has_a_client_id_of_its_own_built_on_the_users() {
    let cfg = config(&[("client.id", "billing")]);
    let ids: Vec<_> = ROLES.map(|r| get(&cfg, r, "client.id").unwrap()).into();
    assert_eq!(
        ids,
        [
            "billing",
            "billing-overflow",
            "billing-sinks",
            "billing-admin"
        ]
    );
    let unnamed = config(&[]);
    assert_eq!(
        get(&unnamed, Role::Sinks, "client.id").as_deref(),
        Some("rdkafka-sinks")
    );
}

#[test]
fn role_specific_properties_go_to_their_client_alone() {
    let cfg = config(&[
        ("group.instance.id", "billing-1"),
        ("transactional.id", "tx-1"),
        ("max.poll.interval.ms", "600000"),
        ("compression.type", "zstd"),
        ("acks", "1"),
        ("enable.idempotence", "false"),
    ]);
    let has = |role, key| get(&cfg, role, key).is_some();
    assert_eq!(
        ROLES.map(|r| has(r, "group.instance.id")),
        [true, false, false, false]
    );
    assert_eq!(ROLES.map(|r| has(r, "transactional.id")), [false; 4]);
    assert_eq!(
        ROLES.map(|r| has(r, "max.poll.interval.ms")),
        [true, true, false, false]
    );
    assert_eq!(
        ROLES.map(|r| has(r, "compression.type")),
        [false, false, true, false]
    );
    // The overflow's order and the dead letters' delivery rest on these.
    assert_eq!(get(&cfg, Role::Sinks, "acks").as_deref(), Some("all"));
    assert_eq!(
        get(&cfg, Role::Sinks, "enable.idempotence").as_deref(),
        Some("true")
    );
    assert_eq!(
        get(&cfg, Role::Overflow, "group.id").as_deref(),
        Some("g.overflow")
    );
    assert_eq!(get(&cfg, Role::Group, "group.id").as_deref(), Some("g"));
}

#[test]
fn a_bad_property_of_any_client_is_refused_by_name_before_connecting() {
    for (key, value) in [
        ("linger.ms", "-5"),
        ("fetch.wait.max.ms", "x"),
        ("no.such", "1"),
    ] {
        let b = ConsumerBuilder::default().group_id("g").topics(["t"]);
        let err = built(b.set(key, value)).expect_err("refused");
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    let b = ConsumerBuilder::default().group_id("g").topics(["t"]);
    let err = built(b.set("group.id", "other")).expect_err("refused");
    assert!(err.to_string().contains("`group.id`"), "{err}");
}
