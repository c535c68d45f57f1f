//! The PostgreSQL side of the fixtures: reachability and a fresh database per test.

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::{database_name, tcp_probe, unique_name, Error, Result, REACHABILITY_TIMEOUT};

/// Every server has this database; we connect to it to create and drop the test databases.
const MAINTENANCE_DATABASE: &str = "postgres";

/// Checks that PostgreSQL answers at `DATABASE_URL` (or [`crate::DEFAULT_DATABASE_URL`]) and
/// returns a handle to that server.
///
/// # Panics
/// Within a few seconds, with a message naming the address and `scripts/db ensure`, when the
/// server does not answer `SELECT 1`.
pub async fn require_postgres() -> Postgres {
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| crate::DEFAULT_DATABASE_URL.to_owned());
    require_postgres_at(&url).await
}

/// [`require_postgres`] for an explicit connection URL.
///
/// # Panics
/// As [`require_postgres`].
pub async fn require_postgres_at(url: &str) -> Postgres {
    match Postgres::connect(url).await {
        Ok(postgres) => postgres,
        Err(e) => panic!("{e}"),
    }
}

/// A PostgreSQL server that answered `SELECT 1`; test databases are created on it.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// Connection settings for the server's maintenance database.
    admin: Config,
}

impl Postgres {
    /// Connects to the server `url` names and runs `SELECT 1`, all within a few seconds. The
    /// database named in `url` need not exist: the check uses the server's `postgres` database.
    ///
    /// # Errors
    /// [`Error::PostgresUnreachable`] when `url` is malformed or the server does not answer.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut admin: Config = url.parse().map_err(|e| Error::PostgresUnreachable {
            addr: url.to_owned(),
            reason: format!("not a valid connection URL: {e}"),
        })?;
        admin
            .dbname(MAINTENANCE_DATABASE)
            .connect_timeout(REACHABILITY_TIMEOUT);
        let addr = server_address(&admin);
        let unreachable = |reason: String| Error::PostgresUnreachable {
            addr: addr.clone(),
            reason,
        };
        if let Some(Host::Tcp(host)) = admin.get_hosts().first() {
            let port = admin.get_ports().first().copied().unwrap_or(5432);
            let socket = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| unreachable(format!("cannot resolve {host}: {e}")))?
                .next()
                .ok_or_else(|| unreachable(format!("{host} resolves to no address")))?;
            tcp_probe(socket).await.map_err(unreachable)?;
        }
        let select_one = async {
            let client = connect(&admin).await?;
            client.simple_query("SELECT 1").await?;
            Ok::<_, tokio_postgres::Error>(())
        };
        match tokio::time::timeout(REACHABILITY_TIMEOUT, select_one).await {
            Ok(Ok(())) => Ok(Self { admin }),
            Ok(Err(e)) => Err(unreachable(format!("SELECT 1 failed: {e}"))),
            Err(_) => Err(unreachable(format!(
                "no answer to SELECT 1 within {REACHABILITY_TIMEOUT:?}"
            ))),
        }
    }

    /// Connection settings for a database named `dbname` on this server.
    pub fn config_for(&self, dbname: &str) -> Config {
        let mut config = self.admin.clone();
        config.dbname(dbname);
        config
    }

    /// Creates an empty database with a unique name built from `prefix`. It is dropped again
    /// (connections and all) when the returned [`TestDatabase`] is dropped.
    ///
    /// # Errors
    /// When the server refuses to create it.
    pub async fn create_database(&self, prefix: &str) -> Result<TestDatabase> {
        let database = self.reserve_database(prefix);
        let client = connect(&self.admin).await?;
        // The name is made of [a-z0-9_] only (see `database_name`), so it needs no escaping.
        client
            .batch_execute(&format!("CREATE DATABASE \"{}\"", database.name))
            .await?;
        Ok(database)
    }

    /// A unique database name built from `prefix`, for code under test that creates the database
    /// itself. Nothing is created; whatever exists under that name when the returned
    /// [`TestDatabase`] is dropped is dropped with it.
    pub fn reserve_database(&self, prefix: &str) -> TestDatabase {
        let name = database_name(&unique_name(prefix));
        TestDatabase {
            config: self.config_for(&name),
            admin: self.admin.clone(),
            name,
        }
    }

    /// Whether the server has a database called `name`.
    ///
    /// # Errors
    /// When the server cannot be asked.
    pub async fn has_database(&self, name: &str) -> Result<bool> {
        let client = connect(&self.admin).await?;
        let row = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?;
        Ok(row.is_some())
    }
}

/// A database created for one test; dropped from the server when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    config: Config,
    admin: Config,
}

impl TestDatabase {
    /// The database's unique name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection settings for this database, e.g. for the service under test.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// These settings as a libpq connection string (`host=... port=... dbname=...`), which
    /// `DATABASE_URL` accepts as well as a URL: for code under test that runs as another process.
    pub fn connection_string(&self) -> String {
        let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut parts = Vec::new();
        for host in self.config.get_hosts() {
            match host {
                Host::Tcp(host) => parts.push(format!("host={}", quote(host))),
                Host::Unix(path) => parts.push(format!("host={}", quote(&path.to_string_lossy()))),
            }
        }
        for port in self.config.get_ports() {
            parts.push(format!("port={port}"));
        }
        if let Some(user) = self.config.get_user() {
            parts.push(format!("user={}", quote(user)));
        }
        if let Some(password) = self.config.get_password() {
            parts.push(format!(
                "password={}",
                quote(&String::from_utf8_lossy(password))
            ));
        }
        parts.push(format!("dbname={}", quote(&self.name)));
        parts.join(" ")
    }

    /// Opens a new connection to this database; its connection task runs on the current runtime.
    ///
    /// # Errors
    /// When the server refuses the connection.
    pub async fn connect(&self) -> Result<Client> {
        Ok(connect(&self.config).await?)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = std::mem::take(&mut self.name);
        // Best effort: a database left behind costs disk, not correctness, since no other test
        // uses its name. FORCE ends connections the test may still hold.
        crate::block_on_side_runtime(async move {
            if let Ok(client) = connect(&admin).await {
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            }
        });
    }
}

/// Connects with `config` and spawns the connection task on the current runtime. The task ends
/// when the returned client is dropped; its errors surface as errors of the client's calls.
async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `host:port` of the first host in `config`, for messages.
fn server_address(config: &Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) => format!("{host}:{port}"),
        Some(Host::Unix(path)) => format!("{}/.s.PGSQL.{port}", path.display()),
        None => format!("localhost:{port}"),
    }
}
