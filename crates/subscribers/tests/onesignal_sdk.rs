//! OneSignal's own published client, unchanged, against the service: `onesignal-python-api` from
//! PyPI (the version in `tests/onesignal/sdk-version`, a 2.x that still has the players
//! endpoints) creates, updates, reads, lists and deletes devices and edits tags by external user
//! id through `tests/onesignal/players.py`, its typed models parsing every answer (the deleted
//! device then reads 404); then sends 1,000 updates of one device in a row, and the last one
//! must be what the database holds once the consumer has applied everything written.
//!
//! The SDK lives in a virtualenv that `scripts/test` makes (`scripts/venv`); without it this
//! test fails at once, naming the command.

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use kafkaesque_subscribers::Roles;
use rdkafka::Message as _;
use reqwest::StatusCode;
use serde_json::Value;
use support::*;
use uuid::Uuid;

const SDK: &str = "onesignal-python-api";

/// The virtualenv's Python, or a failure naming the command that makes it.
fn python() -> PathBuf {
    let version = include_str!("onesignal/sdk-version").trim();
    let home = std::env::var_os("KAFKAESQUE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".kafkaesque")
        });
    let python = home.join(format!("{SDK}-{version}")).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `scripts/venv {SDK} {version}` (scripts/test does)",
        python.display()
    );
    python
}

/// The offset of the newest record in the topic (partition 0) that names subscription `id`.
fn newest_offset_naming(rig: &Rig, id: Uuid) -> i64 {
    let reader = rig.reader_from_start();
    let end = rig.written();
    let mut newest = None;
    let mut next = 0;
    while next < end {
        let Some(m) = reader.poll(std::time::Duration::from_secs(10)) else {
            panic!("the topic's records up to {end}, got to {next}");
        };
        let m = m.expect("a record");
        let payload: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
        if payload["player_id"] == id.to_string() {
            newest = Some(m.offset());
        }
        next = m.offset() + 1;
    }
    newest.expect("records naming the device")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onesignals_python_sdk_drives_every_players_endpoint_and_the_last_of_1000_updates_wins() {
    let python = python();
    let rig = Rig::new("sdk", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("sdk").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onesignal/players.py");
    let run = tokio::process::Command::new(python)
        .arg(script)
        .env("ONESIGNAL_HOST", format!("http://{}/api/v1", service.addr))
        .env("APP_ID", app.id.to_string())
        .env("APP_KEY", &app.key)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the SDK script runs");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the SDK script failed: {}\n{out}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let steps: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "created",
            "updated",
            "listed",
            "user_tags",
            "ordered",
            "deleted"
        ]
    );

    // The last of the 1,000 updates wins: once the row has taken the newest record the API
    // wrote for it, it holds that update's values and no earlier one's.
    let ordered = &steps[4];
    let id: Uuid = ordered["id"].as_str().unwrap().parse().unwrap();
    let last = ordered["last"].as_i64().unwrap();
    let newest = newest_offset_naming(&rig, id);
    let db = rig.database.connect().await.expect("database");
    let (session_count, n) = eventually("the consumer caught up with the device", WITHIN, || async {
        let row = db
            .query_one(
                "SELECT source_offset, device->>'session_count', tags->>'n' FROM players WHERE id = $1",
                &[&id],
            )
            .await
            .expect("the device's row");
        let caught_up = row.get::<_, i64>(0) == newest;
        caught_up.then(|| (row.get::<_, Option<String>>(1), row.get::<_, Option<String>>(2)))
    })
    .await;
    assert_eq!(
        (session_count, n),
        (Some(last.to_string()), Some(last.to_string()))
    );
    let (s, shown) = c.player(&app, id).await;
    assert_eq!(
        (s, shown["session_count"].as_i64()),
        (StatusCode::OK, Some(last))
    );
    // The deleted device is gone once the consumer has applied the delete.
    let doomed: Uuid = steps[5]["id"].as_str().unwrap().parse().unwrap();
    eventually("the delete applied", WITHIN, || async {
        (c.player(&app, doomed).await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    service.stop().await;
}
