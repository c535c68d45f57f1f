//! Connecting to PostgreSQL (over TLS as `sslmode` says), and creating the service's database
//! when the server lacks it.

use std::path::PathBuf;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use crate::{Error, Result};

/// What the server's certificate is checked against, as libpq's `sslmode` says. Whether TLS is
/// used at all (`disable`, `prefer`, `require`) is the connection settings' own `ssl_mode`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub verify: Verify,
    /// `sslrootcert`: the PEM file of the CA(s) that signed the server's certificate (default:
    /// the system's).
    pub root_cert: Option<PathBuf>,
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verify {
    /// Nothing (`prefer`, `require`): the session is encrypted, the server not authenticated.
    #[default]
    Nothing,
    /// Signed by a trusted CA (`verify-ca`; `require` with an `sslrootcert`, as in libpq).
    Ca,
    /// That, and issued for the host connected to (`verify-full`).
    Full,
}

/// Reads a connection URL or `key=value` string as libpq does for `sslmode` (`disable`,
/// `prefer` — the default —, `require`, `verify-ca`, `verify-full`) and `sslrootcert`, which
/// tokio-postgres alone does not take; the rest is tokio-postgres's.
///
/// # Errors
/// [`Error::Config`] naming what is wrong; never the password.
pub fn parse(url: &str) -> Result<(Config, Tls)> {
    let (rest, params) = take_tls_params(url);
    let mut config: Config = rest
        .parse()
        .map_err(|e| Error::Config(format!("database_url: {e}")))?;
    let mut tls = Tls::default();
    let mut mode = None;
    for (key, value) in params {
        match key.as_str() {
            "sslrootcert" => tls.root_cert = Some(PathBuf::from(value)),
            _ => mode = Some(value),
        }
    }
    let (ssl_mode, verify) = match mode.as_deref() {
        None | Some("prefer") => (SslMode::Prefer, Verify::Nothing),
        Some("disable") => (SslMode::Disable, Verify::Nothing),
        Some("require") if tls.root_cert.is_some() => (SslMode::Require, Verify::Ca),
        Some("require") => (SslMode::Require, Verify::Nothing),
        Some("verify-ca") => (SslMode::Require, Verify::Ca),
        Some("verify-full") => (SslMode::Require, Verify::Full),
        Some(other) => {
            return Err(Error::Config(format!(
                "database_url: sslmode {other:?} is not one of disable, prefer, require, \
                 verify-ca, verify-full"
            )))
        }
    };
    config.ssl_mode(ssl_mode);
    tls.verify = verify;
    Ok((config, tls))
}

/// `url` without its `sslmode` and `sslrootcert` parameters, and those parameters.
fn take_tls_params(url: &str) -> (String, Vec<(String, String)>) {
    let is_tls = |k: &str| k == "sslmode" || k == "sslrootcert";
    let mut taken = Vec::new();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), taken);
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some((k, v)) if is_tls(k) => taken.push((k.to_owned(), percent_decode(v))),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, taken);
    }
    // `key=value` pairs, a value in single quotes where it holds spaces (with \\ and \'
    // escapes).
    let mut kept = Vec::new();
    let mut rest = url.trim();
    while let Some((key, value, len)) = next_pair(rest) {
        if is_tls(key) {
            taken.push((key.to_owned(), value));
        } else {
            kept.push(&rest[..len]);
        }
        rest = rest[len..].trim_start();
    }
    if !rest.is_empty() {
        kept.push(rest); // not a pair: tokio-postgres says what is wrong with it
    }
    (kept.join(" "), taken)
}

/// The first `key=value` pair of `s`: its key, its value unquoted, and its length in `s`.
fn next_pair(s: &str) -> Option<(&str, String, usize)> {
    let eq = s.find('=')?;
    let key = s[..eq].trim();
    let after = &s[eq + 1..];
    let start = eq + 1 + (after.len() - after.trim_start().len());
    let mut value = String::new();
    let mut chars = s[start..].char_indices();
    if s[start..].starts_with('\'') {
        chars.next();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, n)| n)),
                '\'' => return Some((key, value, start + i + 1)),
                c => value.push(c),
            }
        }
        return None; // an unterminated quote
    }
    for (i, c) in chars {
        if c.is_whitespace() {
            return Some((key, value, start + i));
        }
        value.push(c);
    }
    Some((key, value, s.len()))
}

/// `%XX` escapes decoded, as a URL's query holds a path.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Tls {
    /// The TLS connector of every connection of the service: OpenSSL (which librdkafka links
    /// already), checking the server's certificate as [`Tls::verify`] says.
    ///
    /// # Errors
    /// [`Error::Config`] when `sslrootcert` cannot be read.
    pub fn connector(&self) -> Result<MakeTlsConnector> {
        let failed = |e: openssl::error::ErrorStack| Error::Config(format!("database TLS: {e}"));
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(failed)?;
        if self.verify == Verify::Nothing {
            builder.set_verify(SslVerifyMode::NONE);
        } else if let Some(path) = &self.root_cert {
            builder.set_ca_file(path).map_err(|e| {
                Error::Config(format!("database_url: sslrootcert {}: {e}", path.display()))
            })?;
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        if self.verify != Verify::Full {
            connector.set_callback(|connect, _| {
                connect.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(connector)
    }
}

/// Every server has this database; we connect to it to create the service's own.
const MAINTENANCE_DATABASE: &str = "postgres";

/// Opens a connection with `config` and spawns its connection task on the current runtime.
///
/// The task ends when the returned client is dropped; a broken connection shows up as errors of
/// the client's calls.
///
/// # Errors
/// [`Error::Postgres`] when the server refuses the connection or its certificate does not pass
/// `tls`'s check.
pub async fn connect(config: &Config, tls: &Tls) -> Result<Client> {
    let (client, connection) =
        config
            .connect(tls.connector()?)
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
pub async fn ensure_database(config: &Config, tls: &Tls) -> Result<()> {
    let name = config.get_dbname().ok_or(Error::NoDatabaseName)?;
    let mut admin = config.clone();
    admin.dbname(MAINTENANCE_DATABASE);
    let client = connect(&admin, tls).await?;
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
    fn sslmode_and_sslrootcert_are_read_as_libpq_reads_them() {
        let of = |url: &str| {
            let (config, tls) = parse(url).unwrap();
            (config.get_ssl_mode(), tls.verify, tls.root_cert)
        };
        let url = "postgres://postgres:pw@db.example:5432/subs";
        assert_eq!(of(url), (SslMode::Prefer, Verify::Nothing, None));
        assert_eq!(of(&format!("{url}?sslmode=disable")).0, SslMode::Disable);
        assert_eq!(
            of(&format!("{url}?sslmode=require")),
            (SslMode::Require, Verify::Nothing, None)
        );
        let ca = Some(PathBuf::from("/etc/ssl/ca one.pem"));
        assert_eq!(
            of(&format!(
                "{url}?sslrootcert=/etc/ssl/ca%20one.pem&sslmode=require"
            )),
            (SslMode::Require, Verify::Ca, ca.clone())
        );
        assert_eq!(
            of(&format!(
                "{url}?connect_timeout=5&sslmode=verify-full&sslrootcert=/etc/ssl/ca%20one.pem"
            )),
            (SslMode::Require, Verify::Full, ca.clone())
        );
        let (config, tls) = parse(
            "host=db.example user=postgres password='p w' sslmode=verify-ca \
             sslrootcert='/etc/ssl/ca one.pem' dbname=subs",
        )
        .unwrap();
        assert_eq!(tls.verify, Verify::Ca);
        assert_eq!(tls.root_cert, ca);
        assert_eq!(config.get_password(), Some(b"p w".as_slice()));
        assert_eq!(config.get_dbname(), Some("subs"));
        let e = parse(&format!("{url}?sslmode=sometimes"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode") && !e.contains("pw@"), "{e}");
    }

    #[test]
    fn describe_names_server_and_database_but_not_the_password() {
        let config: Config = "postgres://postgres:secret@db.example:6543/subs"
            .parse()
            .unwrap();
        assert_eq!(describe(&config), "db.example:6543/subs");
    }
}
