//! The service skeleton against the real PostgreSQL (and, where said, the real broker): it
//! creates its database, applies the migrations once, answers `/healthz` and `/readyz` truthfully
//! (from a check refreshed every second, naming no host, database or error text) and stops when
//! its shutdown future completes.

use std::net::SocketAddr;
use std::time::Duration;

use kafkaesque_subscribers::{migrations, Config, Roles};
use kafkaesque_testkit::{require_broker, require_postgres, unique_name, Postgres, TestDatabase};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Start-up (database creation, migrations) and shutdown must each finish within this.
const WITHIN: Duration = Duration::from_secs(20);

/// A running service and the means to stop it.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<kafkaesque_subscribers::Result<()>>,
}

impl Running {
    async fn start(kafka_brokers: &str, database: &TestDatabase) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let config = Config {
            kafka_brokers: kafka_brokers.to_owned(),
            database: database.config().clone(),
            listen: addr,
            topic: unique_name("service"),
            partitions: 1,
            // Whatever the local broker is: these tests are about the HTTP side.
            single_node_broker: true,
            ..Config::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(kafkaesque_subscribers::run(
            listener,
            config,
            Roles::API,
            shutdown,
        ));
        Ok(Self { addr, stop, task })
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response =
            tokio::time::timeout(WITHIN, reqwest::get(format!("http://{}{path}", self.addr)))
                .await??;
        Ok((response.status().as_u16(), response.json().await?))
    }

    /// `/readyz` once its body satisfies `until` (the check is refreshed in the background), as
    /// status, body and the body's text.
    async fn readyz_until(
        &self,
        until: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<(u16, Value, String)> {
        let deadline = std::time::Instant::now() + WITHIN;
        loop {
            let response = reqwest::get(format!("http://{}/readyz", self.addr)).await?;
            let status = response.status().as_u16();
            let text = response.text().await?;
            let body: Value = serde_json::from_str(&text)?;
            if until(&body) {
                return Ok((status, body, text));
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "/readyz never came to the state awaited: {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(WITHIN, self.task).await???;
        Ok(())
    }
}

/// An address where no broker listens: a port that was free a moment ago.
fn no_broker() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").to_string()
}

async fn applied_versions(database: &TestDatabase) -> anyhow::Result<Vec<i32>> {
    let client = database.connect().await?;
    let rows = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

#[tokio::test]
async fn creates_its_database_migrates_reports_ready_and_shuts_down() -> anyhow::Result<()> {
    let broker = require_broker().await;
    let postgres = require_postgres().await;
    let database = postgres.reserve_database("service");
    assert!(!postgres.has_database(database.name()).await?);

    let service = Running::start(broker.bootstrap_servers(), &database).await?;
    let (status, body) = service.get("/healthz").await?;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"status": "alive"}))
    );
    let (status, body, _) = service.readyz_until(|b| b["ready"] == true).await?;
    assert_eq!(
        (status, body),
        (
            200,
            serde_json::json!({"ready": true, "kafka": {"up": true}, "postgres": {"up": true}})
        )
    );
    service.stop().await?;

    assert!(postgres.has_database(database.name()).await?);
    let all: Vec<i32> = migrations::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied_versions(&database).await?, all);

    // A second start finds everything in place and applies nothing twice.
    let again = Running::start(broker.bootstrap_servers(), &database).await?;
    assert_eq!(again.get("/healthz").await?.0, 200);
    again.stop().await?;
    assert_eq!(applied_versions(&database).await?, all);
    Ok(())
}

#[tokio::test]
async fn readiness_names_kafka_when_no_broker_answers() -> anyhow::Result<()> {
    let postgres = require_postgres().await;
    let database = postgres.create_database("no-kafka").await?;
    let broker = no_broker();
    let service = Running::start(&broker, &database).await?;

    // Once the first check has answered: PostgreSQL up, Kafka down.
    let (status, body, text) = service
        .readyz_until(|b| b["postgres"]["up"] == true)
        .await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"ready": false, "kafka": {"up": false}, "postgres": {"up": true}})
    );
    // A stranger learns which dependency is down, not where it lives or what it said.
    let port = broker.rsplit(':').next().unwrap();
    for secret in [port, "127.0.0.1", database.name(), "error", "failed"] {
        assert!(!text.contains(secret), "{secret:?} in {text}");
    }
    // Alive all the same: a missing dependency is not a reason to restart the process.
    assert_eq!(service.get("/healthz").await?.0, 200);
    service.stop().await
}

#[tokio::test]
async fn readiness_names_postgres_when_its_database_is_gone() -> anyhow::Result<()> {
    let broker = require_broker().await;
    let postgres = require_postgres().await;
    let database = postgres.create_database("db-gone").await?;
    let service = Running::start(broker.bootstrap_servers(), &database).await?;
    service.readyz_until(|b| b["ready"] == true).await?;

    drop_database(&postgres, database.name()).await?;
    let (status, body, text) = service
        .readyz_until(|b| b["postgres"]["up"] == false)
        .await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"ready": false, "kafka": {"up": true}, "postgres": {"up": false}})
    );
    assert!(!text.contains(database.name()), "{text}");
    service.stop().await
}

async fn drop_database(postgres: &Postgres, name: &str) -> anyhow::Result<()> {
    let (client, connection) = postgres
        .config_for("postgres")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn start_fails_at_once_naming_an_unreachable_postgres() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let config = Config {
        database: format!("postgres://postgres@127.0.0.1:{port}/kafkaesque").parse()?,
        listen: "127.0.0.1:0".parse()?,
        ..Config::default()
    };
    let outcome = tokio::time::timeout(
        WITHIN,
        kafkaesque_subscribers::serve(config, Roles::ALL, async {}),
    )
    .await?;
    let error = outcome.expect_err("no PostgreSQL, no service").to_string();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_keeping_acknowledged_writes_on_one_replica_is_refused_unless_told_so(
) -> anyhow::Result<()> {
    let broker = require_broker().await;
    let postgres = require_postgres().await;
    let database = postgres.reserve_database("single");
    let topic = unique_name("single");
    let config = Config {
        kafka_brokers: broker.bootstrap_servers().to_owned(),
        database: database.config().clone(),
        listen: "127.0.0.1:0".parse()?,
        topic: topic.clone(),
        group_id: unique_name("single"),
        partitions: 1,
        // One copy, whatever the cluster's size: what the check is for.
        replication_factor: Some(1),
        min_insync_replicas: Some(1),
        ..Config::default()
    };
    let refused = tokio::time::timeout(
        WITHIN,
        kafkaesque_subscribers::serve(config.clone(), Roles::ALL, std::future::pending()),
    )
    .await?
    .expect_err("a single copy is refused")
    .to_string();
    assert!(refused.contains(&topic), "{refused}");
    assert!(refused.contains("single replica"), "{refused}");
    assert!(
        refused.contains("KAFKAESQUE_SINGLE_NODE_BROKER"),
        "{refused}"
    );

    // Told that the broker is a one-node development broker, the same topic serves.
    let told = Config {
        single_node_broker: true,
        ..config
    };
    let told_group = told.group_id.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut service = tokio::spawn(kafkaesque_subscribers::serve(told, Roles::ALL, async {
        let _ = stopped.await;
    }));
    // It serves: its topic is accepted and its consumer joins the group.
    let group = told_group;
    let admin: BaseConsumer = broker.client_config().create()?;
    tokio::time::timeout(WITHIN, async {
        loop {
            assert!(
                !service.is_finished(),
                "the service ended: {:?}",
                (&mut service).await
            );
            let groups = admin.fetch_group_list(Some(&group), Duration::from_secs(5))?;
            if groups.groups().iter().any(|g| !g.members().is_empty()) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await??;
    let _ = stop.send(());
    tokio::time::timeout(WITHIN, service).await???;
    Ok(())
}

#[tokio::test]
async fn concurrent_migration_runs_apply_each_migration_once() -> anyhow::Result<()> {
    let postgres = require_postgres().await;
    let database = postgres.create_database("migrate").await?;
    let mut first = database.connect().await?;
    let mut second = database.connect().await?;
    let server = database.name();
    let (a, b) = tokio::join!(
        migrations::migrate(&mut first, server),
        migrations::migrate(&mut second, server)
    );
    let mut applied: Vec<i32> = a?.into_iter().chain(b?).collect();
    applied.sort_unstable();
    let all: Vec<i32> = migrations::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all);
    assert_eq!(
        migrations::migrate(&mut first, server).await?,
        Vec::<i32>::new()
    );
    assert_eq!(applied_versions(&database).await?, all);
    Ok(())
}
