//! Connecting to PostgreSQL, and creating the service's database when the server lacks it.

use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::{Error, Result};

/// Every server has this database; we connect to it to create the service's own.
const MAINTENANCE_DATABASE: &str = "postgres";

/// Opens a connection with `config` and spawns its connection task on the current runtime.
///
/// The task ends when the returned client is dropped; a broken connection shows up as errors of
/// the client's calls.
///
/// # Errors
/// [`Error::Postgres`] when the server refuses the connection.
pub async fn connect(config: &Config) -> Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|source| Error::Postgres {
            server: describe(config),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Creates the database `config` names unless the server already has it.
///
/// Safe to run from several processes at once: one of them creates it, the others find it.
///
/// # Errors
/// [`Error::NoDatabaseName`] when `config` names no database, [`Error::Postgres`] when the
/// server cannot be reached or refuses.
pub async fn ensure_database(config: &Config) -> Result<()> {
    let name = config.get_dbname().ok_or(Error::NoDatabaseName)?;
    let mut admin = config.clone();
    admin.dbname(MAINTENANCE_DATABASE);
    let client = connect(&admin).await?;
    let failed = |source| Error::Postgres {
        server: describe(&admin),
        source,
    };
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(failed)?
        .is_some();
    if exists {
        return Ok(());
    }
    match client
        .batch_execute(&format!("CREATE DATABASE {}", quote_identifier(name)))
        .await
    {
        Ok(()) => {
            tracing::info!(database = name, "created database");
            Ok(())
        }
        // Another process created it between our check and our CREATE: that is what we wanted.
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

/// `host:port/database` of `config`, for messages and logs (never the password).
pub fn describe(config: &Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let database = config.get_dbname().unwrap_or_default();
    format!("{host}:{port}/{database}")
}

/// `name` as a double-quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(quote_identifier("kafkaesque"), "\"kafkaesque\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn describe_names_server_and_database_but_not_the_password() {
        let config: Config = "postgres://postgres:secret@db.example:6543/subs"
            .parse()
            .unwrap();
        assert_eq!(describe(&config), "db.example:6543/subs");
    }
}
