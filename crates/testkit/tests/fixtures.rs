//! The fixtures against the real broker and the real PostgreSQL: what they hand out exists, is
//! what was asked for, and is gone again once dropped.

use std::time::{Duration, Instant};

use kafkaesque_testkit::{require_broker, require_postgres};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How long a dropped topic may still show in metadata.
const GONE_WITHIN: Duration = Duration::from_secs(15);

fn topic_partitions(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Option<usize>> {
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(5))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_topic_has_its_partitions_and_is_deleted_when_dropped() -> anyhow::Result<()> {
    let broker = require_broker().await;
    let observer: BaseConsumer = broker.client_config().create()?;
    let topic = broker.create_topic("fixture", 3).await?;
    let name = topic.name().to_owned();
    assert!(name.starts_with("kq-fixture-"), "{name}");
    assert_eq!(topic.partitions(), 3);
    let partitions = tokio::task::block_in_place(|| topic_partitions(&observer, &name))?;
    assert_eq!(partitions, Some(3));

    drop(topic);
    let deadline = Instant::now() + GONE_WITHIN;
    while tokio::task::block_in_place(|| topic_partitions(&observer, &name))?.is_some() {
        assert!(
            Instant::now() < deadline,
            "{name} still listed {GONE_WITHIN:?} after drop"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_test_database_is_usable_and_dropped_with_its_connections() -> anyhow::Result<()> {
    let postgres = require_postgres().await;
    let database = postgres.create_database("fixture").await?;
    let name = database.name().to_owned();
    assert!(name.starts_with("kq_fixture_"), "{name}");

    let client = database.connect().await?;
    client
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await?;
    let n: i32 = client.query_one("SELECT n FROM t", &[]).await?.get(0);
    assert_eq!(n, 1);
    assert!(postgres.has_database(&name).await?);

    // The open connection must not keep it alive.
    drop(database);
    assert!(!postgres.has_database(&name).await?);
    assert!(client.simple_query("SELECT 1").await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_reserved_database_is_not_created_but_its_settings_reach_it_once_it_is(
) -> anyhow::Result<()> {
    let postgres = require_postgres().await;
    let reserved = postgres.reserve_database("reserved");
    let name = reserved.name().to_owned();
    assert!(!postgres.has_database(&name).await?);

    let maintenance = postgres.config_for("postgres");
    let (client, connection) = maintenance.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await?;

    // The connection string is what another process gets as DATABASE_URL.
    let parsed: tokio_postgres::Config = reserved.connection_string().parse()?;
    assert_eq!(parsed.get_dbname(), Some(name.as_str()));
    let (other, connection) = parsed.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let current: String = other
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    assert_eq!(current, name);

    drop(reserved);
    assert!(!postgres.has_database(&name).await?);
    Ok(())
}
