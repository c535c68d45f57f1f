//! The rig's end-to-end path: a real broker, a real consumer group, a real PostgreSQL.
//!
//! 10,000 keyed records go into an 8-partition topic; a consumer group member reads them, writes
//! each one to a table and commits the offsets of what it has written. The test then checks, from
//! the table and from the broker, that every record arrived exactly once, where the producer was
//! told it landed, in order per key, and that the group's committed offsets reached the end of
//! every partition. It uses neither `kafkaesque-runtime` nor the engine, on purpose: it checks the
//! rig (broker, consumer group, PostgreSQL) that the consumer's own end-to-end tests stand on, so
//! that when they fail and this passes, the fault is the consumer's, not the environment's.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use kafkaesque_testkit::{require_broker, require_postgres, unique_name, wait_for_assignment};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

const PARTITIONS: i32 = 8;
const KEYS: i32 = 1_000;
const RECORDS_PER_KEY: i32 = 10;
const RECORDS: usize = (KEYS * RECORDS_PER_KEY) as usize;

/// Generous: the join itself takes a second or two, longer on a loaded machine.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// For all delivery reports together.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(60);
/// For all records to be consumed and written.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);
/// For each blocking request to the broker (commit, committed offsets, watermarks).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Commit after this many records written; and once more at the end.
const COMMIT_EVERY: usize = 500;

/// What each record carries, so that the consumer side can be checked against the producer side.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    key: String,
    /// 0, 1, 2... per key, in the order the producer sent them.
    seq: i32,
}

/// Where a record landed: partition and offset.
type Position = (i32, i64);

/// One row of the test's table.
#[derive(Debug)]
struct Row {
    topic: String,
    partition: i32,
    offset: i64,
    key: String,
    seq: i32,
}

fn key_name(k: i32) -> String {
    format!("key-{k:04}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_reach_postgres_exactly_once_in_key_order_and_are_committed(
) -> anyhow::Result<()> {
    let broker = require_broker().await;
    let postgres = require_postgres().await;
    let topic = broker.create_topic("rig-e2e", PARTITIONS).await?;
    let database = postgres.create_database("rig-e2e").await?;
    let db = database.connect().await?;
    db.batch_execute(
        "CREATE TABLE records (
             topic     text    NOT NULL,
             partition integer NOT NULL,
             \"offset\"  bigint  NOT NULL,
             key       text    NOT NULL,
             seq       integer NOT NULL
         )",
    )
    .await?;

    let group = unique_name("rig-e2e");
    let consumer: StreamConsumer = broker
        .group_config(&group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic.name()])?;
    let arrived_early = wait_for_assignment(&consumer, PARTITIONS as usize, ASSIGNMENT_TIMEOUT)
        .await
        .context("the group never assigned the topic's partitions")?;

    // Produce while consuming, as in production.
    let producer = tokio::spawn(produce(broker.client_config(), topic.name().to_owned()));

    let mut sink = Sink::new(&db, &consumer, topic.name()).await?;
    for message in &arrived_early {
        sink.write(message).await?;
    }
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    while sink.written < RECORDS {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, consumer.recv())
            .await
            .map_err(|_| {
                anyhow!(
                    "consumed {} of {RECORDS} records in {CONSUME_TIMEOUT:?}",
                    sink.written
                )
            })??;
        sink.write(&message).await?;
    }
    sink.commit()?;

    let delivered = producer.await??;
    let rows = load_rows(&db).await?;
    assert_each_record_once_where_delivered(&rows, &delivered, topic.name())?;
    assert_key_order_follows_offsets(&rows)?;
    assert_group_committed_to_the_end(&broker.client_config(), &group, topic.name(), &delivered)
        .await?;
    Ok(())
}

/// Produces `RECORDS_PER_KEY` records for each of `KEYS` keys, interleaved, and returns where the
/// delivery reports say each `(key, seq)` landed.
async fn produce(
    mut config: ClientConfig,
    topic: String,
) -> anyhow::Result<HashMap<(String, i32), Position>> {
    // Idempotence keeps each partition in send order even if a request is retried.
    let producer: FutureProducer = config.set("enable.idempotence", "true").create()?;
    let mut pending = Vec::with_capacity(RECORDS);
    for seq in 0..RECORDS_PER_KEY {
        for k in 0..KEYS {
            let key = key_name(k);
            let payload = serde_json::to_vec(&Payload {
                key: key.clone(),
                seq,
            })?;
            let record = FutureRecord::to(&topic).key(&key).payload(&payload);
            let delivery = producer.send_result(record).map_err(|(e, _)| e)?;
            pending.push(((key, seq), delivery));
        }
    }
    let deadline = Instant::now() + PRODUCE_TIMEOUT;
    let mut delivered = HashMap::with_capacity(RECORDS);
    for (id, delivery) in pending {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let report = tokio::time::timeout(remaining, delivery)
            .await
            .map_err(|_| anyhow!("no delivery report for {id:?} within {PRODUCE_TIMEOUT:?}"))?
            .context("producer dropped the delivery report")?
            .map_err(|(e, _)| anyhow!("delivery of {id:?} failed: {e}"))?;
        delivered.insert(id, (report.partition, report.offset));
    }
    Ok(delivered)
}

/// Writes consumed records to the table and commits the offsets of what it has written.
struct Sink<'a> {
    db: &'a Client,
    insert: tokio_postgres::Statement,
    consumer: &'a StreamConsumer,
    topic: &'a str,
    /// For each partition, the offset after the last record written: what a commit stores.
    next_offsets: BTreeMap<i32, i64>,
    written: usize,
}

impl<'a> Sink<'a> {
    async fn new(
        db: &'a Client,
        consumer: &'a StreamConsumer,
        topic: &'a str,
    ) -> anyhow::Result<Self> {
        let insert = db
            .prepare(
                "INSERT INTO records (topic, partition, \"offset\", key, seq) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?;
        Ok(Self {
            db,
            insert,
            consumer,
            topic,
            next_offsets: BTreeMap::new(),
            written: 0,
        })
    }

    /// Inserts `message` as a row, then (every `COMMIT_EVERY` rows) commits: the database write
    /// always comes before the commit that covers it.
    async fn write(&mut self, message: &impl Message) -> anyhow::Result<()> {
        let key = std::str::from_utf8(message.key().context("record without a key")?)?;
        let payload: Payload =
            serde_json::from_slice(message.payload().context("record without a payload")?)?;
        ensure!(
            payload.key == key,
            "record at {}/{} has key {key} but carries {payload:?}",
            message.partition(),
            message.offset()
        );
        self.db
            .execute(
                &self.insert,
                &[
                    &message.topic(),
                    &message.partition(),
                    &message.offset(),
                    &key,
                    &payload.seq,
                ],
            )
            .await?;
        self.next_offsets
            .insert(message.partition(), message.offset() + 1);
        self.written += 1;
        if self.written % COMMIT_EVERY == 0 {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits the next offsets of every partition written to, synchronously.
    fn commit(&self) -> anyhow::Result<()> {
        let mut offsets = TopicPartitionList::new();
        for (&partition, &next) in &self.next_offsets {
            offsets.add_partition_offset(self.topic, partition, Offset::Offset(next))?;
        }
        // A synchronous commit blocks this thread until the broker answers.
        tokio::task::block_in_place(|| self.consumer.commit(&offsets, CommitMode::Sync))
            .context("commit failed")
    }
}

async fn load_rows(db: &Client) -> anyhow::Result<Vec<Row>> {
    let rows = db
        .query(
            "SELECT topic, partition, \"offset\", key, seq FROM records",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Row {
            topic: row.get(0),
            partition: row.get(1),
            offset: row.get(2),
            key: row.get(3),
            seq: row.get(4),
        })
        .collect())
}

/// Every produced record has exactly one row, at the position its delivery report gave, and
/// there is no other row.
fn assert_each_record_once_where_delivered(
    rows: &[Row],
    delivered: &HashMap<(String, i32), Position>,
    topic: &str,
) -> anyhow::Result<()> {
    ensure!(
        delivered.len() == RECORDS,
        "{} delivery reports",
        delivered.len()
    );
    let mut seen: HashMap<(String, i32), Position> = HashMap::with_capacity(rows.len());
    for row in rows {
        ensure!(row.topic == topic, "row from another topic: {row:?}");
        let id = (row.key.clone(), row.seq);
        if let Some(first) = seen.insert(id, (row.partition, row.offset)) {
            bail!("written twice: {row:?}, first at {first:?}");
        }
    }
    for (id, position) in delivered {
        match seen.get(id) {
            Some(found) if found == position => {}
            Some(found) => bail!("{id:?} delivered at {position:?} but consumed at {found:?}"),
            None => bail!("{id:?} delivered at {position:?} but never written"),
        }
    }
    ensure!(
        rows.len() == RECORDS,
        "{} rows for {RECORDS} records",
        rows.len()
    );
    Ok(())
}

/// Each key's records sit in one partition, and in offset order their sequence numbers run
/// 0, 1, 2... with nothing missing or swapped.
fn assert_key_order_follows_offsets(rows: &[Row]) -> anyhow::Result<()> {
    let mut by_key: HashMap<&str, Vec<&Row>> = HashMap::new();
    for row in rows {
        by_key.entry(&row.key).or_default().push(row);
    }
    ensure!(by_key.len() == KEYS as usize, "{} keys", by_key.len());
    for (key, mut records) in by_key {
        records.sort_by_key(|row| (row.partition, row.offset));
        let partitions: Vec<i32> = records.iter().map(|row| row.partition).collect();
        ensure!(
            partitions.windows(2).all(|w| w[0] == w[1]),
            "{key} spread over partitions {partitions:?}"
        );
        let seqs: Vec<i32> = records.iter().map(|row| row.seq).collect();
        let expected: Vec<i32> = (0..RECORDS_PER_KEY).collect();
        ensure!(seqs == expected, "{key} in offset order has seqs {seqs:?}");
    }
    Ok(())
}

/// Asked by a separate client, the broker holds for `group` a committed offset equal to the end
/// of every partition.
///
/// The ends come from the delivery reports, which must cover each partition's offsets from 0
/// without a gap: every record produced is accounted for, not only each partition's end.
async fn assert_group_committed_to_the_end(
    config: &ClientConfig,
    group: &str,
    topic: &str,
    delivered: &HashMap<(String, i32), Position>,
) -> anyhow::Result<()> {
    let mut offsets_by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for &(partition, offset) in delivered.values() {
        offsets_by_partition
            .entry(partition)
            .or_default()
            .push(offset);
    }
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let mut offsets = offsets_by_partition.remove(&partition).unwrap_or_default();
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        ensure!(
            offsets == expected,
            "partition {partition}: delivered offsets are not 0..{}",
            offsets.len()
        );
        ends.insert(partition, offsets.len() as i64);
    }
    ensure!(
        offsets_by_partition.is_empty(),
        "records delivered to partitions {:?} the topic does not have",
        offsets_by_partition.keys()
    );

    // Not subscribed: it only asks the group coordinator, without joining the group.
    let observer: BaseConsumer = config
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(topic, partition);
    }
    let committed =
        tokio::task::block_in_place(|| observer.committed_offsets(partitions, REQUEST_TIMEOUT))?;
    for (&partition, &end) in &ends {
        let element = committed
            .find_partition(topic, partition)
            .with_context(|| format!("no committed offset for partition {partition}"))?;
        ensure!(
            element.offset() == Offset::Offset(end),
            "partition {partition}: committed {:?}, end offset {end}",
            element.offset()
        );
    }
    Ok(())
}
