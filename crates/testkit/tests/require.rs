//! A test that needs a service which is not there must fail at once, saying what is missing and
//! how to bring it up. These tests point the checks at a port where nothing listens.

use std::time::{Duration, Instant};

/// The checks must answer well within this; a hang would be caught here.
const FAIL_FAST: Duration = Duration::from_secs(5);

/// A local port on which, a moment ago, nothing was listening.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Runs `check` in a task of its own and returns the message it panicked with, and how long it
/// took to do so.
async fn panic_message<F>(check: F) -> (String, Duration)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(FAIL_FAST, tokio::spawn(check))
        .await
        .expect("the check should fail fast, not hang");
    let panic = match outcome {
        Ok(_) => panic!("the check should have panicked"),
        Err(join_error) => join_error.into_panic(),
    };
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .expect("panic payload is a message");
    (message, started.elapsed())
}

#[tokio::test]
async fn require_broker_on_a_closed_port_fails_fast_naming_the_fix() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let (message, took) = panic_message({
        let addr = addr.clone();
        async move { kafkaesque_testkit::require_broker_at(&addr).await }
    })
    .await;
    assert!(
        message.starts_with(&format!("Kafka broker not reachable at {addr}")),
        "{message}"
    );
    assert!(message.contains("run `scripts/broker start`"), "{message}");
    assert!(took < FAIL_FAST, "took {took:?}");
}

#[tokio::test]
async fn require_postgres_on_a_closed_port_fails_fast_naming_the_fix() {
    let port = closed_port();
    let (message, took) = panic_message(async move {
        let url = format!("postgres://postgres@127.0.0.1:{port}/kafkaesque");
        kafkaesque_testkit::require_postgres_at(&url).await
    })
    .await;
    assert!(
        message.starts_with(&format!("PostgreSQL not reachable at 127.0.0.1:{port}")),
        "{message}"
    );
    assert!(message.contains("run `scripts/db ensure`"), "{message}");
    assert!(took < FAIL_FAST, "took {took:?}");
}
