//! The service over secure transport: every Kafka client of it logs in over SASL_SSL (a SCRAM
//! user the test creates on the secure broker), and a wrong password leaves it not ready, its
//! writes answered 503, and the refusal in its log.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesque_subscribers::Roles;
use kafkaesque_testkit::require_secure_broker;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_works_end_to_end_over_sasl_ssl() {
    let secure = require_secure_broker().await;
    let user = secure
        .create_user("svc-secure")
        .await
        .expect("a SCRAM user");
    let broker = secure.connect_as(&user).await.expect("logged in");
    let mut rig = Rig::on(broker, "svc-secure", 2).await;
    rig.config.kafka_properties = rig.broker.properties().to_vec();
    let service = Running::start(&rig.config, Roles::ALL).await;
    let client = service.client();

    eventually("/readyz answers 200", WITHIN, || async {
        let (status, _) = client.call(Method::GET, "/readyz", None, None).await.ok()?;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    let app = client.create_app("secure").await;
    let id = client
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    client
        .update(
            &app,
            id,
            &json!({"app_id": app.id, "tags": {"plan": "vip"}, "language": "de"}),
        )
        .await;
    // Acknowledged over SASL_SSL by the producer, consumed over SASL_SSL, applied to the row.
    let row = eventually("the update reaches PostgreSQL", WITHIN, || async {
        let (status, row) = client.player(&app, id).await;
        (status == StatusCode::OK && row["tags"]["plan"] == "vip").then_some(row)
    })
    .await;
    assert_eq!(row["language"], "de");
    service.stop().await;
}

/// The log lines of this test process, to look for what the service said.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_leaves_the_service_not_ready_and_its_writes_refused_with_503() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let secure = require_secure_broker().await;
    let user = secure.create_user("svc-wrong").await.expect("a SCRAM user");
    let broker = secure.connect_as(&user).await.expect("logged in");
    let mut rig = Rig::on(broker, "svc-wrong", 1).await;
    rig.config.kafka_properties = secure.properties(&user.name, "not-the-password");
    rig.config.write_timeout = Duration::from_secs(2);
    let service = Running::start(&rig.config, Roles::ALL).await;
    let client = service.client();

    // PostgreSQL answers, Kafka refuses: not ready, and /readyz says which.
    let body = eventually("/readyz to have checked both", WITHIN, || async {
        let (status, body) = client.call(Method::GET, "/readyz", None, None).await.ok()?;
        (body["postgres"]["up"] == true).then_some((status, body))
    })
    .await;
    assert_eq!(body.0, StatusCode::SERVICE_UNAVAILABLE, "{}", body.1);
    assert_eq!(body.1["kafka"]["up"], false, "{}", body.1);

    // A write is answered 503 within its timeout, not accepted and not left hanging.
    let app = client.create_app("wrong").await;
    let started = Instant::now();
    let (status, answer) = client
        .must(
            Method::POST,
            "/api/v1/players",
            Some(&app.auth()),
            Some(&json!({"app_id": app.id, "device_type": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // The log says why, and never the password.
    let said = eventually("the refused login in the log", WITHIN, || async {
        let text = logs.text();
        text.contains("the broker refused the service's login")
            .then_some(text)
    })
    .await;
    assert!(said.contains("SASL authentication error"), "{said}");
    assert!(
        !said.contains("not-the-password"),
        "the password is in the log"
    );
    service.stop().await;
}
