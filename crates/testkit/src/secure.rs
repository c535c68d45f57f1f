//! The secure broker: a SASL_SSL listener (SCRAM-SHA-512 over TLS) that `scripts/broker start
//! --secure` runs, and the users a test creates on it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::kafka::Broker;
use crate::{first_socket_addr, tcp_probe, unique_name, Error, Result};

/// `scripts/broker`, which starts the secure broker and creates its users.
const BROKER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/broker");

/// The SASL mechanism of the secure broker's users.
pub const SCRAM_MECHANISM: &str = "SCRAM-SHA-512";

/// Checks that the secure broker's SASL_SSL listener accepts connections at
/// `KAFKA_SECURE_BROKERS` (or [`crate::DEFAULT_KAFKA_SECURE_BROKERS`]) and that the CA of its
/// certificate is at `KAFKA_SECURE_CA_LOCATION` (or `tls/ca.pem` in its state folder, see
/// [`default_ca_location`]).
///
/// Nothing logs in yet: a test creates its own user with [`SecureBroker::create_user`].
///
/// # Panics
/// Within a few seconds, naming the address and `scripts/broker start --secure`, when nothing
/// listens there or the CA file is missing.
pub async fn require_secure_broker() -> SecureBroker {
    let bootstrap = std::env::var("KAFKA_SECURE_BROKERS")
        .unwrap_or_else(|_| crate::DEFAULT_KAFKA_SECURE_BROKERS.to_owned());
    let ca_location = std::env::var_os("KAFKA_SECURE_CA_LOCATION")
        .map(PathBuf::from)
        .unwrap_or_else(default_ca_location);
    match SecureBroker::find(&bootstrap, ca_location).await {
        Ok(broker) => broker,
        Err(e) => panic!("{e} (the secure broker: `scripts/broker start --secure`)"),
    }
}

/// Where `scripts/broker start --secure` writes its CA: `tls/ca.pem` in the secure broker's
/// state folder, under `KAFKAESQUE_BROKER_STATE` or else `$KAFKAESQUE_HOME/run` (default
/// `~/.kafkaesque/run`), as the script itself decides.
pub fn default_ca_location() -> PathBuf {
    let state = std::env::var_os("KAFKAESQUE_BROKER_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("KAFKAESQUE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".kafkaesque")
                })
                .join("run")
        });
    state.join("kafka-secure").join("tls").join("ca.pem")
}

/// A broker with a SASL_SSL listener, and the CA its clients trust.
#[derive(Debug, Clone)]
pub struct SecureBroker {
    bootstrap: String,
    ca_location: PathBuf,
}

/// A SCRAM user a test created. Its `Debug` output shows no password.
#[derive(Clone)]
pub struct ScramUser {
    /// The user's name, unique to the test.
    pub name: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl SecureBroker {
    /// The secure broker at `bootstrap`, whose certificate `ca_location` signed: something must
    /// accept TCP connections there, and the CA file must exist.
    ///
    /// # Errors
    /// [`Error::BrokerUnreachable`] otherwise.
    pub async fn find(bootstrap: &str, ca_location: PathBuf) -> Result<Self> {
        let unreachable = |reason: String| Error::BrokerUnreachable {
            addr: bootstrap.to_owned(),
            reason,
        };
        let addr = first_socket_addr(bootstrap).map_err(unreachable)?;
        tcp_probe(addr).await.map_err(unreachable)?;
        if !ca_location.is_file() {
            return Err(unreachable(format!(
                "no CA certificate at {} (KAFKA_SECURE_CA_LOCATION)",
                ca_location.display()
            )));
        }
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            ca_location,
        })
    }

    /// The SASL_SSL bootstrap list.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The PEM file of the CA that signed the broker's certificate, for `ssl.ca.location`.
    pub fn ca_location(&self) -> &Path {
        &self.ca_location
    }

    /// Creates a SCRAM-SHA-512 user with a [`unique_name`] built from `prefix` and a random
    /// password, through `scripts/broker scram-user` (Kafka's own tool, over the broker's
    /// admin listener; about three seconds, most of them a JVM starting).
    ///
    /// # Errors
    /// When the script fails, with its output.
    pub async fn create_user(&self, prefix: &str) -> Result<ScramUser> {
        let user = ScramUser {
            name: unique_name(prefix),
            password: uuid::Uuid::new_v4().simple().to_string(),
        };
        let failed = |output: String| Error::Setup {
            what: format!("creating SCRAM user {}", user.name),
            output,
        };
        let mut child = tokio::process::Command::new(BROKER_SCRIPT)
            .args(["scram-user", "--secure", &user.name])
            // The script finds the admin listener next to the client one.
            .env(
                "KAFKAESQUE_SECURE_BROKER_ADDR",
                first_address(&self.bootstrap),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("cannot run {BROKER_SCRIPT}: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(format!("{}\n", user.password).as_bytes())
            .await
            .map_err(|e| failed(format!("writing the password: {e}")))?;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(user)
    }

    /// The librdkafka properties of a client that logs in as `user` (or as anyone with this
    /// `password`): `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password` and
    /// `ssl.ca.location`, with their librdkafka names.
    pub fn properties(&self, name: &str, password: &str) -> Vec<(String, String)> {
        [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", SCRAM_MECHANISM),
            ("sasl.username", name),
            ("sasl.password", password),
            ("ssl.ca.location", &self.ca_location.to_string_lossy()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// A [`Broker`] whose clients log in as `user`: its topics are created over SASL_SSL too.
    ///
    /// # Errors
    /// As [`Broker::connect_with`].
    pub async fn connect_as(&self, user: &ScramUser) -> Result<Broker> {
        Broker::connect_with(&self.bootstrap, self.properties(&user.name, &user.password)).await
    }
}

/// The first `host:port` of a bootstrap list.
fn first_address(list: &str) -> &str {
    list.split(',').next().unwrap_or_default().trim()
}
