//! `kafkaesque chaos --quick`, the short chaos run the test suite keeps: the built binary, run as
//! a user runs it, must pass — no acknowledged update lost, no row's order broken, duplicates
//! within their bound — and print its verdict table. It brings up its own one-node Kafka broker
//! (through scripts/broker, with its own state folder and ports) and PostgreSQL cluster, so it
//! disturbs no other test.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The quick run takes two to three minutes; this is the backstop.
const LIMIT: Duration = Duration::from_secs(420);

#[tokio::test]
async fn the_quick_chaos_run_passes_and_prints_its_verdict() {
    let child = Command::new(env!("CARGO_BIN_EXE_kafkaesque"))
        .args(["chaos", "--quick"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start kafkaesque chaos");
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("the quick run ends in time")
        .expect("its output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the quick chaos run failed ({})",
        out.status
    );
    for row in [
        "acknowledged",
        "lost",
        "order violations",
        "duplicate bound",
        "consumer kills (SIGKILL)",
        "re-sent after a 503",
        "longest partition without owner",
        "broker restarts (all nodes)",
        "database outage",
    ] {
        assert!(stdout.contains(row), "the verdict table has a {row:?} row");
    }
    assert!(stdout.trim_end().ends_with("PASSED"), "{stdout}");
}
