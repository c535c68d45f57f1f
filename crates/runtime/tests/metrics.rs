//! Metrics against the real broker, rendered by the Prometheus recorder: each consumer's carry its
//! group and client id, librdkafka's statistics show up, and a revoked partition's gauges go.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kafkaesque_runtime::{HandlerError, Record};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tokio::sync::Notify;

/// One series of the rendered output: its name, labels and value.
#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some(Series {
                name: name.to_owned(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// The series of `name` whose labels include every one of `with`.
fn find(handle: &PrometheusHandle, name: &str, with: &[(&str, &str)]) -> Vec<Series> {
    parse(&handle.render())
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// Waits (up to two minutes) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Runs a consumer that counts what it handles, until `stop` is notified.
fn start(
    b: kafkaesque_runtime::ConsumerBuilder,
    handled: &Arc<AtomicUsize>,
    stop: &Arc<Notify>,
) -> tokio::task::JoinHandle<kafkaesque_runtime::Result<()>> {
    let consumer = b.build().expect("valid config");
    let (h, s) = (handled.clone(), stop.clone());
    let handler = move |_: Record| {
        h.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), HandlerError>(()) }
    };
    tokio::spawn(consumer.run(handler, async move { s.notified().await }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_one_process_keep_their_own_metrics_and_a_revoked_partitions_gauges_go() {
    // A gauge no one sets for three seconds leaves the output.
    let recorder = PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(3)))
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the test's own recorder");

    let a = Fixture::new("metrics-a", 2).await;
    let b = Fixture::new("metrics-b", 1).await;
    a.produce(100, 3);
    b.produce(40, 1);
    let stop = Arc::new(Notify::new());
    let (ha, hb, hc) = (Arc::default(), Arc::default(), Arc::default());
    let stats = |builder: kafkaesque_runtime::ConsumerBuilder, id: &str| {
        builder
            .set("client.id", id)
            .set("statistics.interval.ms", "500")
    };
    let run_a = start(stats(a.builder(), "alpha"), &ha, &stop);
    let run_b = start(stats(b.builder(), "beta"), &hb, &stop);
    let completed = |group: &str, id: &str| {
        find(
            &handle,
            "kafkaesque_records_completed_total",
            &[("group", group), ("client_id", id)],
        )
        .first()
        .map_or(0.0, |s| s.value)
    };
    until("each consumer's counter shows its own traffic", || {
        completed(&a.group, "alpha") == 300.0 && completed(&b.group, "beta") == 40.0
    })
    .await;
    assert_eq!(ha.load(Ordering::SeqCst), 300);
    assert_eq!(hb.load(Ordering::SeqCst), 40);
    until(
        "librdkafka's statistics show per broker and partition",
        || {
            let of_a = [("group", a.group.as_str()), ("client_id", "alpha")];
            !find(&handle, "kafkaesque_broker_rtt_seconds", &of_a).is_empty()
                && !find(&handle, "kafkaesque_client_replyq", &of_a).is_empty()
                && find(&handle, "kafkaesque_partition_lag_messages", &of_a).len() == 2
                && find(&handle, "kafkaesque_partition_fetch_queue_messages", &of_a).len() == 2
        },
    )
    .await;

    // A third member joins the first group: one partition moves from alpha to gamma.
    let run_c = start(stats(a.builder(), "gamma"), &hc, &stop);
    let in_flight = |id: &str| -> Vec<String> {
        find(
            &handle,
            "kafkaesque_partition_in_flight",
            &[("group", a.group.as_str()), ("client_id", id)],
        )
        .into_iter()
        .map(|s| s.labels["partition"].clone())
        .collect()
    };
    until("gamma owns a partition", || in_flight("gamma").len() == 1).await;
    let moved = in_flight("gamma")[0].clone();
    until("alpha's gauges of the moved partition are gone", || {
        !in_flight("alpha").contains(&moved)
    })
    .await;
    assert_eq!(
        in_flight("alpha").len(),
        1,
        "alpha's gauges of the partition it kept stay"
    );
    let lag_of_alpha = find(
        &handle,
        "kafkaesque_partition_lag_messages",
        &[("group", a.group.as_str()), ("client_id", "alpha")],
    );
    assert!(
        lag_of_alpha.iter().all(|s| s.labels["partition"] != moved),
        "and its lag of the moved partition too: {lag_of_alpha:?}"
    );
    stop.notify_waiters();
    for run in [run_a, run_b, run_c] {
        run.await.expect("joined").expect("consumer ran cleanly");
    }
}
