//! `kafkaesque serve` as an operator runs it: a separate process configured through the
//! environment, against the real broker and PostgreSQL, logging JSON lines, stopping cleanly on
//! SIGTERM — and refusing, with a message that names the setting, a topic that would keep
//! acknowledged writes on one replica.

use std::process::Stdio;
use std::time::Duration;

use kafkaesque_testkit::{require_broker, require_postgres, unique_name};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

/// Start-up, readiness and shutdown must each finish within this.
const WITHIN: Duration = Duration::from_secs(30);

/// `kafkaesque serve` on its own database and topic, logging to a pipe.
fn serve(database_url: &str, brokers: &str, single_node_broker: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafkaesque"));
    command
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("KAFKA_BROKERS", brokers)
        .env("KAFKAESQUE_TOPIC", unique_name("cli-serve"))
        .env("KAFKAESQUE_GROUP", unique_name("cli-serve"))
        .env("KAFKAESQUE_PARTITIONS", "2")
        .env(
            "KAFKAESQUE_SINGLE_NODE_BROKER",
            single_node_broker.to_string(),
        )
        .env("KAFKAESQUE_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Reads log lines until one whose message is `message`; every line must be a JSON object.
async fn until(lines: &mut Lines<BufReader<ChildStdout>>, message: &str) -> Value {
    let mut logged = Vec::new();
    tokio::time::timeout(WITHIN, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let entry: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if entry["fields"]["message"] == message {
                return entry;
            }
            logged.push(entry);
        }
        panic!("stdout closed before {message:?}; logged: {logged:#?}")
    })
    .await
    .unwrap_or_else(|_| panic!("no {message:?} log line within {WITHIN:?}"))
}

#[tokio::test]
async fn serve_logs_json_answers_health_and_exits_cleanly_on_sigterm() {
    let postgres = require_postgres().await;
    let broker = require_broker().await;
    let database = postgres.reserve_database("cli-serve");
    let mut child = serve(
        &database.connection_string(),
        broker.bootstrap_servers(),
        broker.brokers() == 1,
    )
    .spawn()
    .expect("start kafkaesque serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();

    let listening = until(&mut lines, "listening").await;
    let addr = listening["fields"]["addr"].as_str().expect("addr field");
    let health: Value = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("GET /healthz")
        .json()
        .await
        .expect("JSON body");
    assert_eq!(health, serde_json::json!({"status": "alive"}));
    // Up and serving, topic created and consumer started: only then is SIGTERM the test.
    until(&mut lines, "consumer started").await;

    let pid = child.id().expect("still running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = tokio::time::timeout(WITHIN, child.wait())
        .await
        .expect("exits within the time limit after SIGTERM")
        .expect("wait for the child");
    assert!(status.success(), "exit status {status}");

    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await.expect("read stdout") {
        rest.push(serde_json::from_str::<Value>(&line).expect("JSON log line"));
    }
    assert!(
        rest.iter()
            .any(|entry| entry["fields"]["message"] == "SIGTERM: shutting down"),
        "{rest:#?}"
    );
    assert!(postgres.has_database(database.name()).await.expect("ask"));
}

#[tokio::test]
async fn serve_refuses_a_single_copy_topic_unless_told_the_broker_has_one_node() {
    let postgres = require_postgres().await;
    let broker = require_broker().await;
    if broker.brokers() > 1 {
        eprintln!(
            "the broker at {} has several nodes: nothing to refuse",
            broker.bootstrap_servers()
        );
        return;
    }
    let database = postgres.reserve_database("cli-refuse");
    let mut child = serve(
        &database.connection_string(),
        broker.bootstrap_servers(),
        false,
    )
    .spawn()
    .expect("start kafkaesque serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let refused = until(&mut lines, "the topic cannot be used as configured").await;
    assert_eq!(refused["level"], "ERROR", "{refused:#}");
    let error = refused["fields"]["error"].as_str().expect("error field");
    assert!(error.contains("KAFKAESQUE_SINGLE_NODE_BROKER"), "{error}");
    let status = tokio::time::timeout(WITHIN, child.wait())
        .await
        .expect("exits by itself")
        .expect("wait for the child");
    assert!(!status.success(), "a refused start must not exit 0");
}
