//! A PostgreSQL cluster of the run's own: `initdb` and `pg_ctl` from the server package, run as
//! the `postgres` user (the server refuses to run as root), on a free port, in a folder of the
//! run's work directory. The run stops it for the database outage, so it must never be the
//! shared server other tests use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::process::{free_port, run_logged, wait_listening};
use crate::{Error, Result};

/// Where Debian's `postgresql` package puts the server programs: the newest
/// `/usr/lib/postgresql/<version>/bin` that has `pg_ctl`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

/// A running (or deliberately stopped) cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Cluster {
    /// Initialises a cluster in `dir` (created, handed to the `postgres` user) and starts it.
    pub async fn create(bin: &Path, dir: &Path) -> Result<Cluster> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        run_logged(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir),
            &dir.with_extension("setup.log"),
        )
        .await?;
        let cluster = Cluster {
            bin: bin.to_owned(),
            data: dir.join("data"),
            log: dir.join("server.log"),
            port: free_port()?,
        };
        let initdb = bin.join("initdb");
        run_logged(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(initdb)
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&cluster.data),
            &dir.with_extension("setup.log"),
        )
        .await?;
        cluster.start().await?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn pg_ctl(&self, action: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", action]);
        c
    }

    /// Starts the server and waits until it accepts connections.
    pub async fn start(&self) -> Result<()> {
        // The socket goes into the data folder: /var/run/postgresql belongs to the shared server.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.data.display()
        );
        let mut c = self.pg_ctl("start");
        c.arg("-l").arg(&self.log).arg("-o").arg(options);
        run_logged(&mut c, &self.data.with_extension("ctl.log")).await?;
        let addr = ([127, 0, 0, 1], self.port).into();
        if !wait_listening(addr, Duration::from_secs(30)).await {
            return Err(Error::Setup(format!(
                "PostgreSQL on port {} did not start; see {}",
                self.port,
                self.log.display()
            )));
        }
        Ok(())
    }

    /// Stops the server (`-m fast`: open connections are cut, as in a real outage).
    pub async fn stop(&self) -> Result<()> {
        let mut c = self.pg_ctl("stop");
        c.args(["-m", "fast"]);
        run_logged(&mut c, &self.data.with_extension("ctl.log")).await
    }
}

impl Drop for Cluster {
    /// Stops the server whatever happened to the run (`immediate`: nothing of it is kept).
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A connection whose driver task runs on the current runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "chaos: a PostgreSQL connection ended");
        }
    });
    Ok(client)
}
