//! The run's own Apache Kafka cluster, one node or three, started and stopped through
//! `scripts/broker` with a state folder in the run's work folder and ports of its own: the run
//! freezes, kills and restarts its nodes, and the shared brokers other tests use must not notice.
//!
//! The script owns the nodes (their configuration, storage, pid files and start-up checks); this
//! type only asks it for things and sends the signals the script has no command for (SIGSTOP and
//! SIGCONT of a freeze, SIGTERM of one node in a rolling restart). Node `i` has `node.id` `i`,
//! which is how metadata names a partition's leader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::process::Command;

use crate::process::{run_logged, signal};
use crate::{Error, Result};

/// How long one node has for a controlled shutdown (SIGTERM) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A cluster the run started. Dropping it kills every node, whatever happened to the run.
#[derive(Debug)]
pub struct Cluster {
    script: PathBuf,
    nodes: u32,
    /// The script's settings that make this cluster the run's own: its state folder and ports.
    env: Vec<(&'static str, String)>,
    bootstrap: String,
    /// The script's output, every call appended.
    log: PathBuf,
    /// Nodes the run took down on purpose; any other node that is gone ended on its own.
    down: BTreeSet<u32>,
    /// Each node's pid as of its last start.
    pids: Vec<Option<u32>>,
    stopped: bool,
}

impl Cluster {
    /// Starts `nodes` (1 or 3) nodes with their state under `state`, on free ports, and waits
    /// until each answers. A watchdog kills them if this process disappears without stopping
    /// them (a SIGKILL from a test harness' timeout runs no destructor).
    pub async fn start(script: &Path, nodes: u32, state: &Path, log: PathBuf) -> Result<Cluster> {
        if !script.exists() {
            return Err(Error::Setup(format!(
                "no broker script at {}",
                script.display()
            )));
        }
        let state = state.to_string_lossy().into_owned();
        let (env, bootstrap) = if nodes == 1 {
            // The client port and the controller's, the next one.
            let port = free_ports(&[0, 1])?;
            let addr = format!("127.0.0.1:{port}");
            let env = vec![
                ("KAFKAESQUE_BROKER_STATE", state),
                ("KAFKAESQUE_BROKER_ADDR", addr.clone()),
            ];
            (env, addr)
        } else {
            // Clients on base..base+2, controllers on base+100..base+102 (the script's layout).
            let base = free_ports(&[0, 1, 2, 100, 101, 102])?;
            let env = vec![
                ("KAFKAESQUE_BROKER_STATE", state),
                ("KAFKAESQUE_CLUSTER_PORT_BASE", base.to_string()),
            ];
            let addrs: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
            (env, addrs.join(","))
        };
        let mut cluster = Cluster {
            script: script.to_owned(),
            nodes,
            env,
            bootstrap,
            log,
            down: BTreeSet::new(),
            pids: vec![None; nodes as usize],
            stopped: false,
        };
        cluster.start_missing().await?;
        cluster.watchdog()?;
        Ok(cluster)
    }

    fn script(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.script);
        c.args(args)
            .args(["--nodes", &self.nodes.to_string()])
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .kill_on_drop(true);
        c
    }

    /// `host:port,...` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn nodes(&self) -> u32 {
        self.nodes
    }

    /// Starts every node that is not running (`scripts/broker start` is idempotent) and waits
    /// until all answer.
    pub async fn start_missing(&mut self) -> Result<()> {
        run_logged(&mut self.script(&["start"]), &self.log).await?;
        for node in 1..=self.nodes {
            self.pids[node as usize - 1] = Some(self.read_pid(node).await?);
        }
        self.down.clear();
        self.stopped = false;
        Ok(())
    }

    async fn read_pid(&self, node: u32) -> Result<u32> {
        let out = self
            .script(&["pid", "--node", &node.to_string()])
            .output()
            .await
            .map_err(Error::io("running scripts/broker pid"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| Error::Setup(format!("node {node} of the run's cluster is not running")))
    }

    fn pid(&self, node: u32) -> Result<u32> {
        self.pids
            .get(node.wrapping_sub(1) as usize)
            .copied()
            .flatten()
            .ok_or_else(|| Error::Setup(format!("node {node} has not been started")))
    }

    /// SIGSTOP of `node` for `duration`, then SIGCONT: a stalled broker whose connections stay
    /// open and whose peers and clients get no answer.
    pub async fn freeze(&self, node: u32, duration: Duration) -> Result<()> {
        let pid = self.pid(node)?;
        signal(pid, "STOP").await?;
        tokio::time::sleep(duration).await;
        signal(pid, "CONT").await
    }

    /// SIGKILL of `node`, as a crash would; [`Cluster::start_missing`] brings it back.
    pub async fn kill(&mut self, node: u32) -> Result<()> {
        self.down.insert(node);
        run_logged(
            &mut self.script(&["kill", "--node", &node.to_string()]),
            &self.log,
        )
        .await
    }

    /// SIGTERM of `node` (a controlled shutdown: its leaderships move first), SIGKILL if it has
    /// not ended within 30 s (`STOP_GRACE`). `Ok(true)` if it ended on its own.
    pub async fn stop_node(&mut self, node: u32) -> Result<bool> {
        let pid = self.pid(node)?;
        self.down.insert(node);
        signal(pid, "TERM").await?;
        let deadline = Instant::now() + STOP_GRACE;
        while alive(pid) {
            if Instant::now() >= deadline {
                self.kill(node).await?;
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(true)
    }

    /// Stops every node (`scripts/broker stop`): the whole cluster down.
    pub async fn stop(&mut self) -> Result<()> {
        self.down.extend(1..=self.nodes);
        run_logged(&mut self.script(&["stop"]), &self.log).await?;
        self.stopped = true;
        Ok(())
    }

    /// A node that ended although the run did not take it down, and how it was found.
    pub fn exited(&self) -> Option<String> {
        (1..=self.nodes)
            .filter(|n| !self.down.contains(n))
            .find_map(|n| {
                let pid = self.pids[n as usize - 1]?;
                (!alive(pid)).then(|| format!("node {n} (pid {pid}) is gone"))
            })
    }

    /// A process of its own session that waits for this one to end and then kills the nodes
    /// that still run. After a clean stop it finds none.
    fn watchdog(&self) -> Result<()> {
        let script = r#"
            while kill -0 "$1" 2>/dev/null; do sleep 1; done
            for ((i = 1; i <= $3; i++)); do "$2" kill --nodes "$3" --node "$i" || true; done
        "#;
        std::process::Command::new("setsid")
            .args(["bash", "-c", script, "watchdog"])
            .arg(std::process::id().to_string())
            .arg(&self.script)
            .arg(self.nodes.to_string())
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(Error::io("starting the broker watchdog"))?;
        Ok(())
    }
}

impl Drop for Cluster {
    /// Kills the nodes still running (SIGKILL: quick, and the run's data is thrown away).
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        for node in 1..=self.nodes {
            let _ = std::process::Command::new(&self.script)
                .args(["kill", "--nodes", &self.nodes.to_string()])
                .args(["--node", &node.to_string()])
                .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// A base port such that base + each offset is free on 127.0.0.1. Drawn below the kernel's
/// ephemeral range (32768 and up), so that no client connection takes one of them meanwhile.
fn free_ports(offsets: &[u16]) -> Result<u16> {
    let mut rng = rand::thread_rng();
    for _ in 0..100 {
        let base = rng.gen_range(20_000..32_000);
        let free = offsets
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if free {
            return Ok(base);
        }
    }
    Err(Error::Setup(
        "found no free ports for the run's broker".into(),
    ))
}
