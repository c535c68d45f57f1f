//! One side of a peer comparison, in a process of its own so that its peak RSS and its CPU are
//! its own: Parallel Consumer or the plain Java consumer in a JVM ([`Harness`]), ours or the raw
//! rdkafka loop in `kafkaesque bench --peer-worker` ([`super::worker`]).
//!
//! Both speak the same protocol, one line each on standard output: `ready` once the timed pass
//! has handled its first record; `done <partition> <offset>` per handled record when streaming;
//! last, the [`Outcome`] as JSON. On standard input, `expect N` ends the timed pass once N
//! records are handled, and its end ends the pass at once. A side that is SIGKILLed says nothing
//! more: what it printed before is what it did.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::harness::Harness;

/// Who consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Confluent's Parallel Consumer 0.5.3.3, in a JVM.
    ParallelConsumer,
    /// A plain `KafkaConsumer` poll loop (kafka-clients 3.9.1), in a JVM.
    PlainJava,
    /// This consumer.
    Ours,
    /// A bare rdkafka `BaseConsumer` poll loop.
    Raw,
}

/// Order of the handler calls, as both libraries name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Key,
    Partition,
}

/// Our hot-key policy, for the incident (the peer has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Coalesce,
    Divert,
    Backpressure,
}

/// The synthetic handler both sides run: sleeps `base_ms`, plus 0 to `spread_ms` ms chosen by the
/// record's offset (`Side::sleep_ms`: both sides sleep alike for the same records), plus `hot_ms` for
/// records of `hot_key`. All zero: a no-op that never sleeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Handler {
    pub base_ms: u64,
    pub spread_ms: u64,
    pub hot_key: Option<String>,
    pub hot_ms: u64,
}

impl Handler {
    /// How long the handler sleeps for the record at `offset`, of the hot key or not.
    pub fn sleep_ms(&self, offset: i64, hot: bool) -> u64 {
        let spread = if self.spread_ms > 0 {
            mix(offset as u64) % (self.spread_ms + 1)
        } else {
            0
        };
        self.base_ms + spread + if hot { self.hot_ms } else { 0 }
    }
}

/// splitmix64's finaliser: a uniform draw from an offset, the same bits as the harness's `mix`.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One side's run, as the benchmark asks for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub side: Side,
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// The timed pass ends after this many records; 0: when told (`expect N`, or stdin's end).
    pub records: usize,
    /// Records of the same topic consumed first, in a group of their own, untimed.
    pub warmup: usize,
    pub order: Order,
    pub concurrency: usize,
    pub handler: Handler,
    /// Ours only; `None` is the library's default.
    pub policy: Option<Policy>,
    /// Print `done <partition> <offset>` per handled record.
    pub stream: bool,
    /// Report one [`Outcome::samples`] entry per handled record.
    pub samples: bool,
}

impl Job {
    /// The harness's arguments for this job.
    fn java_args(&self) -> Vec<String> {
        let side = if self.side == Side::ParallelConsumer {
            "pc"
        } else {
            "plain"
        };
        let order = match self.order {
            Order::Key => "KEY",
            Order::Partition => "PARTITION",
        };
        let mut a: Vec<String> = [
            ("side", side.to_owned()),
            ("brokers", self.brokers.clone()),
            ("topic", self.topic.clone()),
            ("group", self.group.clone()),
            ("records", self.records.to_string()),
            ("warmup", self.warmup.to_string()),
            ("ordering", order.to_owned()),
            ("concurrency", self.concurrency.to_string()),
            ("base-ms", self.handler.base_ms.to_string()),
            ("spread-ms", self.handler.spread_ms.to_string()),
            ("hot-ms", self.handler.hot_ms.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [format!("--{k}"), v])
        .collect();
        if let Some(k) = &self.handler.hot_key {
            a.extend(["--hot-key".to_owned(), k.clone()]);
        }
        a.extend(self.stream.then(|| "--stream".to_owned()));
        a.extend(self.samples.then(|| "--samples".to_owned()));
        a
    }
}

/// What one side's timed pass measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub records: usize,
    /// From the first record fetched to the last one handled.
    pub seconds: f64,
    /// CPU the whole process spent over the same span (10 ms ticks; 0 where not told).
    pub cpu_seconds: f64,
    /// `VmHWM` of the process at the end of the timed pass (0 where not told).
    pub peak_rss_bytes: u64,
    /// Per handled record (or coalesced delivery): `[handled at ms, produced at ms, hot 0/1,
    /// records it stands for]`.
    pub samples: Vec<[i64; 4]>,
    /// The threads that spent the most CPU from `ready` to the outcome, with their shares of one
    /// core: measured by the benchmark from `/proc/<pid>/task`, not reported by the side.
    #[serde(default)]
    pub busiest: Option<String>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    /// µs of process CPU per record; NaN when the span was too short for the kernel's ticks.
    pub fn cpu_us(&self) -> f64 {
        if self.cpu_seconds > 0.0 {
            self.cpu_seconds * 1e6 / self.records as f64
        } else {
            f64::NAN
        }
    }

    pub fn rss_mib(&self) -> f64 {
        self.peak_rss_bytes as f64 / f64::from(1 << 20)
    }
}

/// A line a side printed.
#[derive(Debug)]
pub enum Line {
    Ready,
    Done(i32, i64),
    Outcome(Box<Outcome>),
}

/// A side's process, running.
#[derive(Debug)]
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    what: String,
    /// Each thread's CPU when `ready` came, for [`Outcome::busiest`].
    at_ready: Option<(Instant, Vec<ThreadTicks>)>,
}

/// How long a side may run before the benchmark gives up on it.
pub const RUN_LIMIT: Duration = Duration::from_secs(300);

impl Running {
    /// Starts `job`'s side: the harness's JVM, or this executable as `--peer-worker`.
    ///
    /// # Errors
    /// When the harness cannot be built or the process cannot start.
    pub async fn start(job: &Job) -> Result<Running> {
        let mut command = match job.side {
            Side::ParallelConsumer | Side::PlainJava => {
                Harness::get().await?.command(&job.java_args())
            }
            Side::Ours | Side::Raw => {
                let exe = std::env::current_exe()?;
                let mut c = tokio::process::Command::new(exe);
                // `KAFKAESQUE_PEER_LOG` (a `RUST_LOG` filter) lets a diagnosis see, say, the
                // runtime's pauses (`kafkaesque_runtime=debug`) on the benchmark's stderr.
                let log = std::env::var("KAFKAESQUE_PEER_LOG").unwrap_or_else(|_| "warn".into());
                c.args(["bench", "--peer-worker", &serde_json::to_string(job)?])
                    .env("RUST_LOG", log);
                c
            }
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {:?}", job.side))?;
        let stdout = child.stdout.take().context("stdout")?;
        Ok(Running {
            stdin: child.stdin.take(),
            child,
            lines: BufReader::new(stdout).lines(),
            what: format!("{:?}", job.side),
            at_ready: None,
        })
    }

    /// The next line; `None` once the process has closed its output.
    ///
    /// # Errors
    /// When a line does not parse.
    pub async fn next(&mut self) -> Result<Option<Line>> {
        let Some(line) = self.lines.next_line().await? else {
            return Ok(None);
        };
        let line = line.trim();
        if line == "ready" {
            if let Some(pid) = self.child.id() {
                self.at_ready = Some((Instant::now(), thread_ticks(pid)));
            }
            return Ok(Some(Line::Ready));
        }
        if let Some(rest) = line.strip_prefix("done ") {
            let mut f = rest.split(' ');
            let p = f.next().and_then(|x| x.parse().ok());
            let o = f.next().and_then(|x| x.parse().ok());
            if let (Some(p), Some(o)) = (p, o) {
                return Ok(Some(Line::Done(p, o)));
            }
        }
        if line.starts_with('{') {
            let mut o: Outcome = serde_json::from_str(line)
                .with_context(|| format!("{}: outcome {line:.200}", self.what))?;
            if let (Some(pid), Some((at, before))) = (self.child.id(), &self.at_ready) {
                o.busiest = busiest(before, &thread_ticks(pid), at.elapsed());
            }
            return Ok(Some(Line::Outcome(Box::new(o))));
        }
        bail!("{}: unexpected line {line:.200}", self.what)
    }

    /// Waits for `ready`.
    ///
    /// # Errors
    /// When the process ends first or takes longer than `limit`.
    pub async fn ready(&mut self, limit: Duration) -> Result<()> {
        tokio::time::timeout(limit, async {
            loop {
                match self.next().await? {
                    Some(Line::Ready) => return Ok(()),
                    Some(_) => {}
                    None => bail!("{} ended before its first record", self.what),
                }
            }
        })
        .await
        .with_context(|| format!("{}: no record within {} s", self.what, limit.as_secs()))?
    }

    /// Tells the side to end its pass once `records` are handled.
    ///
    /// # Errors
    /// When its standard input is closed.
    pub async fn expect(&mut self, records: usize) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        stdin
            .write_all(format!("expect {records}\n").as_bytes())
            .await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Closes its standard input: the pass ends now.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
    }

    /// SIGKILL, as a crash would.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn kill(&mut self) -> Result<()> {
        Ok(self.child.start_kill()?)
    }

    /// The `done` lines until the process has closed its output (after [`Running::kill`]).
    ///
    /// # Errors
    /// When a line does not parse.
    pub async fn rest(&mut self) -> Result<Vec<(i32, i64)>> {
        let mut done = Vec::new();
        while let Some(line) = self.next().await? {
            if let Line::Done(p, o) = line {
                done.push((p, o));
            }
        }
        let _ = self.child.wait().await;
        Ok(done)
    }

    /// Reads until the [`Outcome`] (ending the pass by closing standard input if it has not come
    /// within `within`), then waits a little for the process to exit and kills it otherwise.
    ///
    /// # Errors
    /// When the process ends without an outcome or takes longer than [`RUN_LIMIT`].
    pub async fn outcome(mut self, within: Duration) -> Result<Outcome> {
        let mut stopped = false;
        let deadline = tokio::time::Instant::now() + within;
        let hard = tokio::time::Instant::now() + within.max(RUN_LIMIT);
        let outcome = loop {
            let until = if stopped { hard } else { deadline };
            match tokio::time::timeout_at(until, self.next()).await {
                Ok(Ok(Some(Line::Outcome(o)))) => break *o,
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => {
                    let status = self.child.wait().await?;
                    bail!("{} ended without an outcome ({status})", self.what)
                }
                Ok(Err(e)) => return Err(e),
                Err(_) if !stopped => {
                    self.stop();
                    stopped = true;
                }
                Err(_) => bail!("{}: no outcome within {} s", self.what, RUN_LIMIT.as_secs()),
            }
        };
        self.stop();
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        Ok(outcome)
    }
}

/// A thread's id, name and CPU ticks so far.
type ThreadTicks = (u32, String, u64);

/// CPU ticks (10 ms) each thread of process `pid` has spent so far: (thread id, name, ticks).
fn thread_ticks(pid: u32) -> Vec<ThreadTicks> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads = Vec::new();
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (name) state ... utime stime ...": the name may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut f = stat[close + 1..].split_whitespace().skip(11);
        let ticks = f.next().and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + f.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let tid = stat[..open].trim().parse().unwrap_or(0);
        threads.push((tid, stat[open + 1..close].to_owned(), ticks));
    }
    threads
}

/// The three threads whose CPU grew most between two [`thread_ticks`] taken `elapsed` apart,
/// and their shares of one core over that span, busiest first (e.g. `pc-control 0.95,
/// pc-broker-poll 0.40, C2 CompilerThre 0.12`); `None` for a span too short to tell.
fn busiest(before: &[ThreadTicks], after: &[ThreadTicks], elapsed: Duration) -> Option<String> {
    let secs = elapsed.as_secs_f64();
    let mut spent: Vec<(u64, &str)> = after
        .iter()
        .map(|(tid, name, ticks)| {
            let was = before.iter().find(|b| b.0 == *tid).map_or(0, |b| b.2);
            (ticks.saturating_sub(was), name.as_str())
        })
        .collect();
    spent.sort_by_key(|s| std::cmp::Reverse(s.0));
    // Fewer than 20 ticks (0.2 s of CPU) say nothing at 10 ms a tick.
    if secs <= 0.0 || spent.iter().map(|s| s.0).sum::<u64>() < 20 {
        return None;
    }
    let top: Vec<String> = spent
        .iter()
        .take(3)
        .map(|(t, n)| format!("`{n}` {:.0}%", *t as f64 / 100.0 / secs * 100.0))
        .collect();
    Some(top.join(", "))
}

/// Runs `job` to its end and returns what it measured.
///
/// # Errors
/// When it cannot start, fails, or takes longer than [`RUN_LIMIT`].
pub async fn run(job: &Job) -> Result<Outcome> {
    Running::start(job).await?.outcome(RUN_LIMIT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handler_sleeps_alike_on_both_sides() {
        // Values the harness's Handler.mix gives (jshell: Harness.Handler.mix(0L) etc.).
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
        let h = Handler {
            spread_ms: 5,
            ..Handler::default()
        };
        let draws: Vec<u64> = (0..6_000).map(|o| h.sleep_ms(o, false)).collect();
        assert!(draws.iter().all(|&d| d <= 5));
        for ms in 0..=5 {
            let n = draws.iter().filter(|&&d| d == ms).count();
            assert!((800..1_200).contains(&n), "{ms} ms drawn {n} times");
        }
        let hot = Handler {
            base_ms: 1,
            hot_ms: 20,
            ..Handler::default()
        };
        assert_eq!((hot.sleep_ms(7, false), hot.sleep_ms(7, true)), (1, 21));
    }
}
