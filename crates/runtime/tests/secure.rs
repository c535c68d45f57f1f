//! The consumer over SASL_SSL (SCRAM-SHA-512 over TLS) on the secure broker: a wrong password
//! ends the run with an authentication error instead of leaving it waiting. Producing,
//! consuming, dead-lettering and diverting there are tested by `divert.rs`, whose test body
//! runs on the secure broker as on the others.

mod common;

use std::time::{Duration, Instant};

use kafkaesque_runtime::{Consumer, HandlerError, Record};
use kafkaesque_testkit::{require_secure_broker, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_ends_the_consumer_with_an_authentication_error() {
    common::logs();
    let secure = require_secure_broker().await;
    let user = secure.create_user("rt-wrong").await.expect("a SCRAM user");
    let mut builder = Consumer::builder()
        .brokers(secure.bootstrap_servers())
        .group_id(unique_name("rt-wrong"))
        .topics([unique_name("rt-wrong")]);
    for (k, v) in secure.properties(&user.name, "not-the-password") {
        builder = builder.set(k, v);
    }
    let consumer = builder.build().expect("a valid configuration");
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        consumer.run(
            |_: Record| async { Ok::<(), HandlerError>(()) },
            std::future::pending(),
        ),
    )
    .await
    .expect("the consumer gives up instead of waiting for ever");
    let error = outcome
        .expect_err("a wrong password is an error")
        .to_string();
    assert!(
        error.to_lowercase().contains("authentication"),
        "the error names the failed authentication: {error}"
    );
    assert!(
        !error.contains("not-the-password"),
        "the error shows no password: {error}"
    );
    // The cluster metadata and commit-metadata budget are asked first (up to 5 s), then the
    // topic's metadata a second at a time: the refusal ends the run within a few seconds more.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failed only after {:?}",
        started.elapsed()
    );
}
