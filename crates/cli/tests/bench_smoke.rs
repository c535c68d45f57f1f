//! `kafkaesque bench --smoke` in the test suite, so that the benchmark cannot silently rot: every
//! comparison runs (tiny sizes, against the real broker and PostgreSQL) and the report folder is
//! complete and parses. The peer comparison runs too, so the Java harness of Parallel Consumer is
//! built here (from Maven Central on a fresh machine) and run at a tiny size. Its figures are not checked — benchmarks are not tests.

use std::collections::BTreeSet;
use std::process::Command;

use kafkaesque_bench::report::Report;
use kafkaesque_testkit::{require_broker, require_postgres, unique_name};

#[tokio::test]
async fn the_smoke_benchmark_writes_a_complete_report() {
    require_broker().await;
    require_postgres().await;
    let out = std::env::temp_dir().join(unique_name("bench-smoke"));
    let run = Command::new(env!("CARGO_BIN_EXE_kafkaesque"))
        .args(["bench", "--smoke", "--out"])
        .arg(&out)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench --smoke failed: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        out.join("report.md").display().to_string(),
        "prints where the report is"
    );

    let report: Report =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).expect("results.json"))
            .expect("results.json parses");
    assert_eq!(report.mode, "smoke");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let comparisons: BTreeSet<&str> = report
        .figures
        .iter()
        .map(|f| f.comparison.as_str())
        .collect();
    assert_eq!(
        comparisons,
        BTreeSet::from([
            "engine alone",
            "overhead",
            "concurrency",
            "exactly-once",
            "incident replay",
            "HTTP edge",
            "PostgreSQL apply rate",
            "peers a: no-op, 8 partitions",
            "peers b: README scenario",
            "peers c: incident",
            "peers d: peak RSS",
            "peers e: replays after SIGKILL",
        ])
    );
    assert!(report.figures.iter().all(|f| !f.samples.is_empty()));

    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    for c in &comparisons {
        assert!(
            md.contains(&format!("## {c}")),
            "{c} missing from report.md"
        );
    }
    for plot in [
        "incident_lag_messages.png",
        "incident_lag_seconds.png",
        "incident_lag_seconds_kafkaesque.png",
        "peers_incident_lag.png",
        "peers_incident_p99.png",
    ] {
        let png = std::fs::read(out.join(plot)).expect(plot);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{plot} is a PNG");
        assert!(
            md.contains(&format!("]({plot})")),
            "{plot} linked from report.md"
        );
    }
    std::fs::remove_dir_all(&out).expect("clean up");
}
