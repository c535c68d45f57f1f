//! Child processes: started with their output in a log file, signalled with the `kill` command
//! (the workspace forbids `unsafe`, so no direct `kill(2)`), and reaped with their exit status.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::{Error, Result};

/// A free port on 127.0.0.1. The port is released before the caller binds it, so another
/// process could take it in between; on this rig nothing else picks ports at that rate.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("binding port 0"))?;
    Ok(listener
        .local_addr()
        .map_err(Error::io("reading its port"))?
        .port())
}

/// Waits until something accepts TCP connections at `addr`.
pub async fn wait_listening(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Sends `signal` (`KILL`, `TERM`, `STOP`, `CONT`) to `pid`.
pub async fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await
        .map_err(Error::io("running kill"))?;
    if !status.success() {
        return Err(Error::Setup(format!(
            "kill -{signal} {pid} failed: {status}"
        )));
    }
    Ok(())
}

/// Two handles appending to `log`: a child's stdout and stderr.
fn log_handles(log: &Path) -> Result<(std::fs::File, std::fs::File)> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io(format!("opening {}", log.display())))?;
    let err = out.try_clone().map_err(Error::io("cloning a log handle"))?;
    Ok((out, err))
}

/// Runs a command to completion; its output goes to `log`. Fails naming the command.
pub async fn run_logged(command: &mut Command, log: &Path) -> Result<()> {
    let what = format!("{:?}", command.as_std());
    let (out, err) = log_handles(log)?;
    let status = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .await
        .map_err(Error::io(what.clone()))?;
    if !status.success() {
        return Err(Error::Setup(format!(
            "{what} failed ({status}); see {}",
            log.display()
        )));
    }
    Ok(())
}

/// A running child and the file its output goes to.
#[derive(Debug)]
pub struct Proc {
    /// A name for reports: `consumer-4`, `broker`.
    pub name: String,
    pub log: PathBuf,
    child: Child,
    pid: u32,
}

impl Proc {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &str, command: &mut Command, log: PathBuf) -> Result<Proc> {
        let (out, err) = log_handles(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io(format!("starting {name}")))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::Setup(format!("{name} exited at once")))?;
        Ok(Proc {
            name: name.to_owned(),
            log,
            child,
            pid,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the process has ended (it is reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, then reap.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        let name = self.name.clone();
        self.child
            .start_kill()
            .map_err(Error::io(format!("killing {name}")))?;
        self.child
            .wait()
            .await
            .map_err(Error::io(format!("reaping {name}")))
    }

    /// SIGTERM, then up to `grace` for a clean exit, then SIGKILL. `Ok(true)` if it exited in time.
    pub async fn terminate(&mut self, grace: Duration) -> Result<bool> {
        if self.exited().is_some() {
            return Ok(true);
        }
        signal(self.pid, "TERM").await?;
        if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
            return Ok(true);
        }
        self.kill().await?;
        Ok(false)
    }
}

/// How a process ended, for a report: `exit 1`, `signal 11 (SIGSEGV)`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(11)) => "signal 11 (SIGSEGV)".to_owned(),
        (None, Some(6)) => "signal 6 (SIGABRT)".to_owned(),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "unknown".to_owned(),
    }
}
