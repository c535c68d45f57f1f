//! The queue against librdkafka's mock cluster: every record comes out once, in order, with its
//! key, payload, headers and timestamp as produced, whatever the batch sizes; the callback
//! fires; the end of a partition comes as an error after its records; a reader that panics
//! loses only what it had taken; messages can be read on another thread once their queue and
//! consumer handle are gone.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kafkaesque_rdqueue::{Message, PartitionQueue};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, Timestamp, TopicPartitionList};

const TOPIC: &str = "queued";

/// A record as produced, and as it must come out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    timestamp: Timestamp,
}

impl Rec {
    fn bytes(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len)
    }
}

/// A message as it came out.
fn rec(m: &Message<'_>) -> Rec {
    Rec {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|h| (h.name.to_vec(), h.value.map(<[u8]>::to_vec)))
            .collect(),
        timestamp: m.timestamp(),
    }
}

/// Record `i` of a partition: every fourth without a key, every fifth without a payload, every
/// seventh with an empty one, every third with headers (one without a value).
fn record(partition: i32, i: usize) -> Rec {
    let headers = if i % 3 == 0 {
        vec![
            (b"trace".to_vec(), Some(format!("t-{i}").into_bytes())),
            (b"empty".to_vec(), None),
        ]
    } else {
        Vec::new()
    };
    Rec {
        partition,
        offset: i as i64,
        key: (i % 4 != 0).then(|| format!("key-{}", i % 10).into_bytes()),
        payload: match (i % 5, i % 7) {
            (0, _) => None,
            (_, 0) => Some(Vec::new()),
            _ => Some(format!("payload {partition}/{i}").into_bytes()),
        },
        headers,
        timestamp: Timestamp::CreateTime(1_700_000_000_000 + i as i64),
    }
}

fn produce(bootstrap: &str, partition: i32, n: usize) -> Result<()> {
    // Idempotent: the partition holds the records in the order they were sent.
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()?;
    for i in 0..n {
        let r = record(partition, i);
        let mut headers = OwnedHeaders::new();
        for (name, value) in &r.headers {
            headers = headers.insert(Header {
                key: std::str::from_utf8(name)?,
                value: value.as_deref(),
            });
        }
        let Timestamp::CreateTime(ts) = r.timestamp else {
            unreachable!()
        };
        let mut rec = BaseRecord::<[u8], [u8]>::to(TOPIC)
            .partition(partition)
            .timestamp(ts);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(v) = &r.payload {
            rec = rec.payload(v);
        }
        if !r.headers.is_empty() {
            rec = rec.headers(headers);
        }
        p.send(rec).map_err(|(e, _)| e)?;
    }
    p.flush(Duration::from_secs(30))?;
    Ok(())
}

struct Setup {
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    consumer: Arc<BaseConsumer>,
}

/// A mock cluster with `n` records in each of two partitions, and a consumer (not yet assigned).
fn setup(n: usize) -> Result<Setup> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, 2, 1)?;
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, 0, n)?;
    produce(&bootstrap, 1, n)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "rdqueue-test")
        .set("enable.auto.commit", "false")
        .create()?;
    Ok(Setup {
        _cluster: cluster,
        consumer: Arc::new(consumer),
    })
}

fn assign_all(c: &BaseConsumer) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    Ok(())
}

/// Takes from each queue until `want` records came out of each, at most `maxes[i]` in round `i`
/// (cycling); the main queue is polled alongside (librdkafka serves its events there) and must
/// yield no record.
fn drain(
    c: &BaseConsumer,
    queues: &[PartitionQueue<rdkafka::consumer::DefaultConsumerContext>],
    maxes: &[usize],
    want: usize,
) -> Result<Vec<Vec<Rec>>> {
    let mut got = vec![Vec::new(); queues.len()];
    let mut round = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.iter().any(|g| g.len() < want) {
        ensure!(
            Instant::now() < deadline,
            "only {:?} records of {want}",
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
        if let Some(m) = c.poll(Duration::from_millis(1)) {
            anyhow::bail!(
                "a record on the main queue: {:?}",
                m.map(|m| rdkafka::Message::offset(&m))
            );
        }
        let max = maxes[round % maxes.len()];
        round += 1;
        for (q, g) in queues.iter().zip(got.iter_mut()) {
            if g.len() >= want {
                continue;
            }
            let mut t = q.taken(max);
            let taken = q.take_into(max, &mut t);
            ensure!(taken <= max, "took {taken} with a maximum of {max}");
            ensure!(t.len() == taken && !t.failed(), "{t:?}");
            let bytes = t.bytes();
            let before = g.len();
            g.extend(t.iter().map(|m| rec(&m.expect("no error in the queue"))));
            let read: usize = g[before..].iter().map(Rec::bytes).sum();
            ensure!(read == bytes, "{bytes} bytes counted, {read} read");
        }
    }
    Ok(got)
}

#[test]
fn every_record_comes_out_once_in_order_as_produced() -> Result<()> {
    const N: usize = 300;
    let s = setup(N)?;
    let queues: Vec<_> = (0..2)
        .map(|p| PartitionQueue::split(&s.consumer, TOPIC, p).context("split"))
        .collect::<Result<_>>()?;
    assign_all(&s.consumer)?;
    // One at a time, a chunk's size, and more than one chunk.
    let got = drain(&s.consumer, &queues, &[1, 64, 150, 7], N)?;
    for (p, a) in got.iter().enumerate() {
        let want: Vec<Rec> = (0..N).map(|i| record(p as i32, i)).collect();
        assert_eq!(a.len(), N, "partition {p}");
        for (got, want) in a.iter().zip(&want) {
            assert_eq!(got, want, "partition {p}");
        }
    }
    Ok(())
}

#[test]
fn the_callback_fires_when_records_arrive() -> Result<()> {
    let s = setup(10)?;
    let mut q = PartitionQueue::split(&s.consumer, TOPIC, 0).context("split")?;
    let (tx, rx) = mpsc::channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    q.on_nonempty(move || {
        n.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(());
    });
    assign_all(&s.consumer)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.try_recv().is_err() {
        ensure!(Instant::now() < deadline, "the callback never fired");
        let _ = s.consumer.poll(Duration::from_millis(10));
    }
    let mut offsets = Vec::new();
    while offsets.len() < 10 {
        ensure!(
            Instant::now() < deadline,
            "records did not follow the callback"
        );
        let _ = s.consumer.poll(Duration::from_millis(10));
        let mut t = q.taken(100);
        q.take_into(100, &mut t);
        offsets.extend(t.iter().map(|m| m.expect("a record").offset()));
    }
    assert_eq!(offsets, (0..10).collect::<Vec<i64>>());
    assert!(calls.load(Ordering::SeqCst) >= 1);
    // Replaced and then dropped with the queue: neither may crash.
    q.on_nonempty(|| {});
    drop(q);
    Ok(())
}

#[test]
fn a_reader_that_panics_loses_only_what_it_had_taken() -> Result<()> {
    let s = setup(100)?;
    let queues = [
        PartitionQueue::split(&s.consumer, TOPIC, 0).context("split")?,
        PartitionQueue::split(&s.consumer, TOPIC, 1).context("split")?,
    ];
    assign_all(&s.consumer)?;
    let first = drain(&s.consumer, &queues[..1], &[1], 1)?;
    assert_eq!(first[0][0].offset, 0);
    // Take up to 20 and panic on the fifth read; the messages are destroyed with the `Taken`.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    let r = catch_unwind(AssertUnwindSafe(|| loop {
        assert!(Instant::now() < deadline, "records never came");
        let _ = s.consumer.poll(Duration::from_millis(1));
        let mut t = queues[0].taken(20);
        queues[0].take_into(20, &mut t);
        for m in t.iter() {
            m.expect("a record");
            seen += 1;
            assert!(seen < 5, "the reader fails");
        }
    }));
    assert!(r.is_err());
    // What comes next is whatever follows the messages the panic dropped, in order.
    let next = drain(&s.consumer, &queues[..1], &[10], 1)?;
    let at = next[0][0].offset;
    assert!(at > 5 && at <= 21, "resumed at {at}");
    Ok(())
}

#[test]
fn messages_are_read_on_another_thread_after_their_queue_and_consumer_are_gone() -> Result<()> {
    const N: usize = 50;
    let s = setup(N)?;
    let q = PartitionQueue::split(&s.consumer, TOPIC, 1).context("split")?;
    assign_all(&s.consumer)?;
    let mut t = q.taken(N);
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.len() < N {
        ensure!(Instant::now() < deadline, "only {} records", t.len());
        let _ = s.consumer.poll(Duration::from_millis(1));
        q.take_into(N - t.len(), &mut t);
    }
    // The `Taken` holds the last reference to the client from here on.
    drop(q);
    let Setup { _cluster, consumer } = s;
    drop(consumer);
    let got = std::thread::spawn(move || {
        t.iter()
            .map(|m| m.map(|m| rec(&m)))
            .collect::<Result<Vec<_>, _>>()
    })
    .join()
    .expect("the reader")?;
    assert_eq!(got, (0..N).map(|i| record(1, i)).collect::<Vec<_>>());
    Ok(())
}

#[test]
#[should_panic(expected = "another consumer")]
fn messages_of_two_consumers_never_share_a_taken() {
    let a = setup(1).expect("setup");
    let b = setup(1).expect("setup");
    let qa = PartitionQueue::split(&a.consumer, TOPIC, 0).expect("split");
    let qb = PartitionQueue::split(&b.consumer, TOPIC, 0).expect("split");
    let mut t = qa.taken(1);
    qb.take_into(1, &mut t);
}

#[test]
fn the_end_of_a_partition_comes_as_an_error_after_its_records() -> Result<()> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(TOPIC, 1, 1)?;
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, 0, 5)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "rdqueue-eof")
        .set("enable.partition.eof", "true")
        .create()?;
    let consumer = Arc::new(consumer);
    let q = PartitionQueue::split(&consumer, TOPIC, 0).context("split")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let (mut offsets, mut eof) = (Vec::new(), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while eof.is_none() {
        ensure!(
            Instant::now() < deadline,
            "no end of partition after {offsets:?}"
        );
        let _ = consumer.poll(Duration::from_millis(1));
        let mut t = q.taken(100);
        q.take_into(100, &mut t);
        for m in t.iter() {
            match m {
                Ok(m) => offsets.push(m.offset()),
                Err(e) => eof = Some(e),
            }
        }
    }
    assert_eq!(offsets, (0..5).collect::<Vec<i64>>());
    assert!(
        matches!(eof, Some(rdkafka::error::KafkaError::PartitionEOF(0))),
        "{eof:?}"
    );
    Ok(())
}
