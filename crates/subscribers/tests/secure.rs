//! The service over secure transport: every Kafka client of it logs in over SASL_SSL (a SCRAM
//! user the test creates on the secure broker), and a wrong password leaves it not ready, its
//! writes answered 503, and the refusal in its log; its PostgreSQL sessions use TLS as
//! `sslmode` in DATABASE_URL says, which the server confirms (`pg_stat_ssl`).

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkaesque_subscribers::{db, Roles, Settings};
use kafkaesque_testkit::{require_postgres, require_secure_broker, DEFAULT_DATABASE_URL};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::*;
use tokio_postgres::config::SslMode;

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
    // PostgreSQL over TLS too: every session of the service, or none starts.
    rig.config.database.ssl_mode(SslMode::Require);
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
    let (plain, encrypted) = sessions_of(&rig.config, rig.database.name()).await;
    assert!(
        plain == 0 && encrypted > 0,
        "{plain} sessions of the service without TLS, {encrypted} with"
    );
    service.stop().await;
}

/// The sessions on `database` without TLS and with, as the server counts them.
async fn sessions_of(config: &kafkaesque_subscribers::Config, database: &str) -> (i64, i64) {
    let client = db::connect(&config.database, &config.database_tls)
        .await
        .expect("a session");
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE s.ssl) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

/// `DATABASE_URL` (as the tests' server is reached) with `sslmode` and more added, read as the
/// service reads it.
fn database_config(params: &str) -> kafkaesque_subscribers::Config {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let url = if !url.starts_with("postgres") {
        format!("{url} {}", params.replace('&', " "))
    } else if url.contains('?') {
        format!("{url}&{params}")
    } else {
        format!("{url}?{params}")
    };
    Settings {
        database_url: Some(url.into()),
        ..Settings::default()
    }
    .resolve()
    .expect("a valid DATABASE_URL")
}

/// Whether the server says the session `config` opens uses TLS.
async fn session_uses_tls(
    config: &kafkaesque_subscribers::Config,
) -> kafkaesque_subscribers::Result<bool> {
    let client = db::connect(&config.database, &config.database_tls).await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_use_tls_as_sslmode_says_and_the_server_confirms_it() {
    let postgres = require_postgres().await;
    let mut probe = postgres.config_for("postgres");
    probe.ssl_mode(SslMode::Disable);
    let on = async {
        let client = db::connect(&probe, &db::Tls::default()).await.ok()?;
        let row = client.query_one("SHOW ssl", &[]).await.ok()?;
        Some(row.get::<_, String>(0) == "on")
    };
    assert_eq!(
        on.await,
        Some(true),
        "the server offers no TLS (`scripts/db ensure` turns it on)"
    );
    let cert = {
        let client = db::connect(&probe, &db::Tls::default()).await.unwrap();
        client
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };

    for (params, tls) in [
        ("sslmode=require", true),
        ("sslmode=prefer", true),
        ("sslmode=disable", false),
        // The server's own certificate is self-signed: it is its own CA.
        (&*format!("sslmode=verify-ca&sslrootcert={cert}"), true),
    ] {
        let config = database_config(params);
        let used = session_uses_tls(&config).await.expect(params);
        assert_eq!(used, tls, "{params}");
    }
    // Debian's snakeoil certificate names the machine, not 127.0.0.1: verify-full refuses it,
    // and says why.
    let config = database_config(&format!("sslmode=verify-full&sslrootcert={cert}"));
    let host_is_named = config.database.get_hosts().iter().any(|h| {
        matches!(h, tokio_postgres::config::Host::Tcp(h) if h == "127.0.0.1" || h == "localhost")
    });
    if host_is_named {
        let e = session_uses_tls(&config)
            .await
            .expect_err("a certificate for another host");
        let e = format!("{e}: {:?}", std::error::Error::source(&e));
        assert!(e.contains("certificate"), "{e}");
    }
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
