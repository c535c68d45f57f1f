//! Consumers as separate processes against the real broker: a group that grows and shrinks
//! mid-run, and a consumer killed with SIGKILL and restarted. Each child process is this test
//! binary itself, running the ignored `child_consumer` test with its settings in the
//! environment; it appends every record it processes to a shared ledger file.

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kafkaesque_runtime::{HandlerError, Record};
use kafkaesque_testkit::unique_name;
use rand::Rng;

const CONCURRENCY: usize = 64;

/// Not a test of its own: the body of every child process.
#[test]
#[ignore = "runs only as a child process of the tests below"]
fn child_consumer() {
    let Some((b, rt)) = child() else {
        return;
    };
    let protocol = std::env::var("CHILD_PROTOCOL").unwrap();
    let ledger = PathBuf::from(std::env::var("CHILD_LEDGER").unwrap());
    rt.block_on(async move {
        let mut b = b
            .concurrency(CONCURRENCY)
            .commit_interval(Duration::from_millis(200));
        for (k, v) in group_protocol(&protocol) {
            b = b.set(k, v);
        }
        let file = Arc::new(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&ledger)
                .unwrap(),
        ));
        let pid = std::process::id();
        let handler = move |r: Record| {
            let file = file.clone();
            async move {
                let ms = rand::thread_rng().gen_range(0..=3);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let payload = String::from_utf8_lossy(r.payload().unwrap_or_default()).into_owned();
                // One write per line with O_APPEND: lines of concurrent writers never interleave.
                let line = format!("{payload} {} {} {pid}\n", r.partition(), r.offset());
                file.lock().unwrap().write_all(line.as_bytes()).unwrap();
                Ok::<(), HandlerError>(())
            }
        };
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
        };
        consumer_run(b, handler, shutdown).await;
    });
}

async fn consumer_run<H: kafkaesque_runtime::Handler>(
    b: kafkaesque_runtime::ConsumerBuilder,
    handler: H,
    shutdown: impl std::future::Future<Output = ()>,
) {
    b.build().unwrap().run(handler, shutdown).await.unwrap();
}

/// The settings of a member under `protocol`: the classic protocol with the tests' short
/// session, or KIP-848's, whose session timeout and heartbeats the broker sets.
fn group_protocol(protocol: &str) -> Vec<(&'static str, &'static str)> {
    match protocol {
        "classic" => SESSION.to_vec(),
        "consumer" => vec![("group.protocol", "consumer")],
        other => panic!("unknown group protocol {other}"),
    }
}

struct Children {
    env: Vec<(&'static str, String)>,
    running: Vec<Child>,
}

impl Children {
    fn spawn(&mut self, extra: &[(&'static str, String)]) {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_consumer",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn()
            .expect("spawn child consumer");
        self.running.push(child);
    }

    fn signal(&mut self, index: usize, signal: &str) {
        let mut child = self.running.remove(index);
        let ok = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal}");
        child.wait().unwrap();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A ledger line: key, seq, partition, offset, pid of the process that applied it.
type Line = (String, usize, i32, i64, u32);

fn read_ledger(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            let (key, seq) = it.next()?.rsplit_once(':')?;
            Some((
                key.to_owned(),
                seq.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// Every record seen at least once; per key, first applications in order. Returns duplicates.
fn check(lines: &[Line], keys: usize, per_key: usize) -> usize {
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (k, s, _, _, _) in lines {
        by_key.entry(k.clone()).or_default().push(*s);
    }
    check_sequences(&by_key, keys, per_key)
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn distinct(lines: &[Line]) -> usize {
    lines
        .iter()
        .map(|(k, s, _, _, _)| (k, s))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_classic_protocol_a_group_that_grows_and_shrinks_loses_nothing() {
    a_group_that_grows_and_shrinks_loses_nothing("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kip_848_a_group_that_grows_and_shrinks_loses_nothing() {
    a_group_that_grows_and_shrinks_loses_nothing("consumer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_classic_protocol_a_killed_consumer_loses_nothing_and_replays_only_its_window() {
    a_killed_consumer_loses_nothing_and_replays_only_its_window("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kip_848_a_killed_consumer_loses_nothing_and_replays_only_its_window() {
    a_killed_consumer_loses_nothing_and_replays_only_its_window("consumer").await;
}

async fn a_group_that_grows_and_shrinks_loses_nothing(protocol: &str) {
    const KEYS: usize = 2_000;
    const PER_KEY: usize = 20;
    let f = Fixture::new("rt-rebalance", 8).await;
    f.produce(KEYS, PER_KEY);
    let dir = tempdir();
    let ledger = dir.join("ledger");
    let mut children = Children {
        env: vec![
            ("CHILD_BROKERS", f.broker.bootstrap_servers().to_owned()),
            ("CHILD_TOPIC", f.topic.name().to_owned()),
            ("CHILD_GROUP", f.group.clone()),
            ("CHILD_LEDGER", ledger.display().to_string()),
            ("CHILD_PROTOCOL", protocol.to_owned()),
        ],
        running: Vec::new(),
    };
    let total = KEYS * PER_KEY;
    tokio::task::block_in_place(|| {
        children.spawn(&[]);
        children.spawn(&[]);
        wait_for("a quarter of the records", Duration::from_secs(120), || {
            distinct(&read_ledger(&ledger)) >= total / 4
        });
        children.spawn(&[]); // a third member joins
        wait_for("half of the records", Duration::from_secs(120), || {
            distinct(&read_ledger(&ledger)) >= total / 2
        });
        children.signal(0, "-TERM"); // the first leaves gracefully
        wait_for("every record", Duration::from_secs(180), || {
            distinct(&read_ledger(&ledger)) >= total
        });
    });
    let lines = read_ledger(&ledger);
    let duplicates = check(&lines, KEYS, PER_KEY);
    // Revoked partitions drain and commit before they move, so only work caught in flight by a
    // rebalance may run twice: at most the concurrency of each member, per rebalance.
    let bound = CONCURRENCY * 3 * 2;
    println!(
        "records {total}, applied {}, duplicates {duplicates} (bound {bound})",
        lines.len()
    );
    assert!(duplicates <= bound, "{duplicates} duplicates > {bound}");
}

async fn a_killed_consumer_loses_nothing_and_replays_only_its_window(protocol: &str) {
    const KEYS: usize = 2_000;
    const PER_KEY: usize = 10;
    let f = Fixture::new("rt-kill", 4).await;
    f.produce(KEYS, PER_KEY);
    let dir = tempdir();
    let ledger = dir.join("ledger");
    let group = f.group.clone();
    let mut children = Children {
        env: vec![
            ("CHILD_BROKERS", f.broker.bootstrap_servers().to_owned()),
            ("CHILD_TOPIC", f.topic.name().to_owned()),
            ("CHILD_GROUP", group.clone()),
            ("CHILD_LEDGER", ledger.display().to_string()),
            ("CHILD_PROTOCOL", protocol.to_owned()),
        ],
        running: Vec::new(),
    };
    let total = KEYS * PER_KEY;
    let (window, killed_pid) = tokio::task::block_in_place(|| {
        children.spawn(&[]);
        let pid = children.running[0].id();
        wait_for("40% of the records", Duration::from_secs(180), || {
            distinct(&read_ledger(&ledger)) >= total * 2 / 5
        });
        // The group's commits before the kill, with the completed offsets above each that their
        // metadata names: none of those may run again.
        let before = commits(&f.broker, &group, &f.topic);
        children.signal(0, "-KILL");
        // What the killed process applied that those commits do not cover: the most that may
        // replay.
        let window = read_ledger(&ledger)
            .iter()
            .filter(|l| l.4 == pid && !before[l.2 as usize].covers(l.3))
            .count();
        children.spawn(&[]);
        wait_for("every record", Duration::from_secs(180), || {
            distinct(&read_ledger(&ledger)) >= total
        });
        children.signal(0, "-TERM");
        (window, pid)
    });
    let lines = read_ledger(&ledger);
    let duplicates = check(&lines, KEYS, PER_KEY);
    println!("records {total}, applied {}, duplicates {duplicates}, window of process {killed_pid} {window}", lines.len());
    assert!(
        duplicates <= window,
        "{duplicates} duplicates: more than the uncommitted window {window}"
    );
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(unique_name("kafkaesque-rt"));
    std::fs::create_dir_all(&d).unwrap();
    d
}
