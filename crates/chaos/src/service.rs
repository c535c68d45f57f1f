//! The supervisor of the service under test: one API process and a group of consumer processes,
//! each `kafkaesque api` / `kafkaesque consume` started from this same executable, with their
//! logs in the run's folder.
//!
//! A consumer that ends without being asked to (a crash, a SIGSEGV, an exit because PostgreSQL was
//! down) is a finding: [`Service::reap`] records how it ended and the tail of its log, and starts
//! a new one in its place so the run goes on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::process::{describe, free_port, Proc};
use crate::Result;

/// How long a consumer asked to leave has to finish its work and commit.
const LEAVE_GRACE: Duration = Duration::from_secs(30);

/// A process that ended on its own.
#[derive(Debug, Clone)]
pub struct Crash {
    pub name: String,
    /// `exit 1`, `signal 11 (SIGSEGV)`.
    pub how: String,
    pub log: PathBuf,
    /// The last lines of its log.
    pub tail: String,
}

/// The settings every process of the service gets, as environment variables.
#[derive(Debug, Clone)]
pub struct Env {
    pub vars: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Service {
    binary: PathBuf,
    env: Env,
    logs: PathBuf,
    api: Option<Proc>,
    /// The API's base URL, `http://127.0.0.1:<port>`.
    pub api_url: String,
    consumers: Vec<Proc>,
    started: usize,
    /// Every consumer log, including those of killed processes.
    pub consumer_logs: Vec<PathBuf>,
    /// When each consumer that is gone ended (milliseconds since the Unix epoch), by its log:
    /// a killed process logs no revocation, its partitions are without owner from then on.
    pub ended: HashMap<PathBuf, i64>,
    pub crashes: Vec<Crash>,
}

impl Service {
    /// Starts the API on a free port; consumers are added with [`Service::join`].
    pub fn start(binary: PathBuf, env: Env, logs: PathBuf) -> Result<Service> {
        let port = free_port()?;
        let mut service = Service {
            binary,
            env,
            logs,
            api: None,
            api_url: format!("http://127.0.0.1:{port}"),
            consumers: Vec::new(),
            started: 0,
            consumer_logs: Vec::new(),
            ended: HashMap::new(),
            crashes: Vec::new(),
        };
        let mut c = service.command("api");
        c.env("KAFKAESQUE_LISTEN", format!("127.0.0.1:{port}"));
        let log = service.logs.join("api.log");
        service.api = Some(Proc::spawn("api", &mut c, log)?);
        Ok(service)
    }

    fn command(&self, role: &str) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg(role).envs(self.env.vars.iter().cloned());
        if role == "consume" {
            // A killed member's partitions move after its session times out: 6 s (the least
            // the broker allows) rather than librdkafka's 45 s.
            c.args(["--consumer-set", "session.timeout.ms=6000"])
                .args(["--consumer-set", "heartbeat.interval.ms=1000"])
                .env("KAFKAESQUE_LISTEN", "127.0.0.1:0");
        }
        c
    }

    /// Consumers running now.
    pub fn consumers(&self) -> usize {
        self.consumers.len()
    }

    /// Starts one more consumer in the group.
    pub fn join(&mut self) -> Result<String> {
        self.started += 1;
        let name = format!("consumer-{}", self.started);
        let log = self.logs.join(format!("{name}.log"));
        let proc = Proc::spawn(&name, &mut self.command("consume"), log.clone())?;
        self.consumer_logs.push(log);
        self.consumers.push(proc);
        Ok(name)
    }

    /// SIGKILLs consumer `pick` (modulo those running) and starts a new one in its place.
    pub async fn kill(&mut self, pick: u64) -> Result<(String, String)> {
        let i = (pick % self.consumers.len().max(1) as u64) as usize;
        let mut victim = self.consumers.remove(i);
        victim.kill().await?;
        self.ended.insert(victim.log.clone(), epoch_ms());
        let name = self.join()?;
        Ok((victim.name, name))
    }

    /// Asks the newest consumer to stop (SIGTERM) and waits for it; `Ok(false)` if it needed a
    /// SIGKILL after the grace period.
    pub async fn leave(&mut self) -> Result<(String, bool)> {
        let Some(mut p) = self.consumers.pop() else {
            return Ok((String::new(), true));
        };
        let clean = p.terminate(LEAVE_GRACE).await?;
        self.ended.insert(p.log.clone(), epoch_ms());
        Ok((p.name, clean))
    }

    /// Records every process that ended on its own and replaces the consumers among them.
    pub fn reap(&mut self) -> Result<Vec<Crash>> {
        let mut found = Vec::new();
        let mut i = 0;
        while i < self.consumers.len() {
            match self.consumers[i].exited() {
                Some(status) => {
                    let p = self.consumers.remove(i);
                    self.ended.insert(p.log.clone(), epoch_ms());
                    found.push(crash(&p, describe(status)));
                }
                None => i += 1,
            }
        }
        for _ in 0..found.len() {
            self.join()?;
        }
        if let Some(api) = self.api.as_mut() {
            if let Some(status) = api.exited() {
                found.push(crash(api, describe(status)));
                self.api = None;
            }
        }
        self.crashes.extend(found.iter().cloned());
        Ok(found)
    }

    /// Whether the API process is still there.
    pub fn api_alive(&self) -> bool {
        self.api.is_some()
    }

    /// Stops every process cleanly (consumers first, so they commit).
    pub async fn stop(&mut self) -> Result<()> {
        for mut p in self.consumers.drain(..) {
            p.terminate(LEAVE_GRACE).await?;
        }
        if let Some(mut api) = self.api.take() {
            api.terminate(LEAVE_GRACE).await?;
        }
        Ok(())
    }
}

/// Now, in milliseconds since the Unix epoch: the clock of the processes' logs.
pub fn epoch_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as i64)
}

fn crash(p: &Proc, how: String) -> Crash {
    let text = std::fs::read_to_string(&p.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    Crash {
        name: p.name.clone(),
        how,
        log: p.log.clone(),
        tail,
    }
}
