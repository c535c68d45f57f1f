//! `kafkaesque serve` as an operator runs it: a separate process configured through the
//! environment, logging JSON lines, stopping cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use kafkaesque_testkit::require_postgres;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Start-up and shutdown must each finish within this.
const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn serve_logs_json_answers_health_and_exits_cleanly_on_sigterm() {
    let postgres = require_postgres().await;
    let database = postgres.reserve_database("cli-serve");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafkaesque"))
        .arg("serve")
        .env("DATABASE_URL", database.connection_string())
        .env("KAFKAESQUE_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start kafkaesque serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();

    // Every line is a JSON object; the one that says "listening" carries the bound address.
    let mut logged = Vec::new();
    let addr = tokio::time::timeout(WITHIN, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let entry: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            logged.push(entry.clone());
            if entry["fields"]["message"] == "listening" {
                return entry["fields"]["addr"].as_str().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("no \"listening\" log line in time")
    .unwrap_or_else(|| panic!("exited without listening; logged: {logged:#?}"));

    let health: Value = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("GET /healthz")
        .json()
        .await
        .expect("JSON body");
    assert_eq!(health, serde_json::json!({"status": "alive"}));

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
