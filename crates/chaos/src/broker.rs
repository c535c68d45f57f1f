//! The run's own nisshi broker (the binary `scripts/broker install` builds), on a free port, so
//! that freezing and restarting it disturbs no other test. Its faults:
//!
//! - **freeze**: SIGSTOP, then SIGCONT — a stalled or partitioned broker: connections stay open
//!   and nothing answers. Nothing is lost even on memory storage.
//! - **restart**: SIGTERM, then start again on the same storage. Only meaningful on durable
//!   (PostgreSQL) storage; on memory storage every record would be gone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::process::{free_port, signal, wait_listening, Proc};
use crate::{Error, Result};

/// How long a started broker has to accept connections.
const START_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Broker {
    nisshi: PathBuf,
    addr: SocketAddr,
    /// `memory://tansu/` or `postgres://...`.
    storage: String,
    log: PathBuf,
    proc: Option<Proc>,
    /// How many times it was started; the log of each start goes to the same file.
    pub starts: u32,
}

impl Broker {
    /// Starts nisshi on a free port with `storage`.
    pub async fn start(nisshi: PathBuf, storage: String, log: PathBuf) -> Result<Broker> {
        if !nisshi.exists() {
            return Err(Error::Setup(format!(
                "the broker {} is not installed — run `scripts/broker install`",
                nisshi.display()
            )));
        }
        let addr = ([127, 0, 0, 1], free_port()?).into();
        let mut broker = Broker {
            nisshi,
            addr,
            storage,
            log,
            proc: None,
            starts: 0,
        };
        broker.launch().await?;
        Ok(broker)
    }

    async fn launch(&mut self) -> Result<()> {
        let url = format!("tcp://{}", self.addr);
        let mut c = Command::new(&self.nisshi);
        c.arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage]);
        self.proc = Some(Proc::spawn("broker", &mut c, self.log.clone())?);
        self.starts += 1;
        if !wait_listening(self.addr, START_LIMIT).await {
            return Err(Error::Setup(format!(
                "the broker did not listen at {} within {START_LIMIT:?}; see {}",
                self.addr,
                self.log.display()
            )));
        }
        Ok(())
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    pub fn durable(&self) -> bool {
        self.storage.starts_with("postgres")
    }

    fn pid(&self) -> Result<u32> {
        self.proc
            .as_ref()
            .map(Proc::pid)
            .ok_or_else(|| Error::Setup("the broker is not running".into()))
    }

    /// SIGSTOP for `duration`, then SIGCONT.
    pub async fn freeze(&self, duration: Duration) -> Result<()> {
        let pid = self.pid()?;
        signal(pid, "STOP").await?;
        tokio::time::sleep(duration).await;
        signal(pid, "CONT").await
    }

    /// Stops the broker cleanly, waits `down`, and starts it again on the same storage.
    pub async fn restart(&mut self, down: Duration) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(10)).await?;
        }
        tokio::time::sleep(down).await;
        self.launch().await
    }

    /// Whether the broker process ended on its own, and how.
    pub fn exited(&mut self) -> Option<String> {
        let p = self.proc.as_mut()?;
        p.exited().map(crate::process::describe)
    }

    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(10)).await?;
        }
        Ok(())
    }
}
