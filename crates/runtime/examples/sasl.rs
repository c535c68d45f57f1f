//! A consumer on a secured cluster: SASL over TLS, with either SCRAM credentials or OAUTHBEARER
//! tokens that the program itself fetches and refreshes.
//!
//!     KAFKA_BROKERS=broker:9093 KAFKA_USER=billing KAFKA_PASSWORD=... \
//!         cargo run -p kafkaesque-runtime --example sasl -- scram <topic>
//!     KAFKA_BROKERS=broker:9093 cargo run -p kafkaesque-runtime --example sasl -- oauth <topic>
//!
//! Every property set here reaches every client the consumer makes (its group consumer, its
//! overflow consumer, its dead-letter producer and its admin client), so they all log in alike;
//! each gets a `client.id` of its own (`billing`, `billing-overflow`, `billing-sinks`,
//! `billing-admin`). `KAFKA_CA` names the CA file when the brokers' certificate is not signed
//! by one the system trusts.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafkaesque_runtime::rdkafka::client::OAuthToken;
use kafkaesque_runtime::rdkafka::statistics::Statistics;
use kafkaesque_runtime::{ClientCallbacks, Consumer, ConsumerBuilder, HandlerError, Record};

/// A token source for OAUTHBEARER. A real one asks an identity provider (OAuth 2 client
/// credentials) and caches the answer; this one mints librdkafka's unsecured JWT shape, which a
/// broker accepts under Kafka's default (unsecured) OAUTHBEARER validator, so the example runs
/// against a test cluster without an identity provider.
#[derive(Debug)]
struct TokenSource {
    principal: String,
    lifetime: Duration,
}

impl ClientCallbacks for TokenSource {
    /// Called by librdkafka before the first connection and again ahead of each token's expiry,
    /// on the thread that polls the client asking: keep it quick.
    fn oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let expires = now + self.lifetime;
        let b64 = |s: String| base64_url(s.as_bytes());
        let header = b64(r#"{"alg":"none"}"#.to_owned());
        let claims = b64(format!(
            r#"{{"sub":"{}","iat":{},"exp":{}}}"#,
            self.principal,
            now.as_secs(),
            expires.as_secs()
        ));
        tracing::info!(principal = %self.principal, "fresh OAUTHBEARER token");
        Ok(OAuthToken {
            token: format!("{header}.{claims}."),
            principal_name: self.principal.clone(),
            lifetime_ms: i64::try_from(expires.as_millis())?,
        })
    }

    /// The consumer reads its own figures from librdkafka's statistics first; these are the
    /// user's too.
    fn stats(&self, stats: &Statistics) {
        tracing::debug!(client = %stats.client_id, brokers = stats.brokers.len(), "statistics");
    }
}

/// Unpadded base64url, as JWTs use it.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// SASL over TLS for every client, with the CA when one is given.
fn secured(builder: ConsumerBuilder, mechanism: &str) -> ConsumerBuilder {
    let builder = builder
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", mechanism)
        .set("client.id", "billing");
    match std::env::var("KAFKA_CA") {
        Ok(ca) => builder.set("ssl.ca.location", ca),
        Err(_) => builder,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().json().init();
    let mut args = std::env::args().skip(1);
    let usage = "usage: sasl (scram|oauth) <topic>";
    let mode = args.next().ok_or(usage)?;
    let topic = args.next().ok_or(usage)?;

    let builder = Consumer::builder()
        .brokers(std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9093".into()))
        .group_id("sasl-example")
        .topics([topic]);
    let builder = match mode.as_str() {
        "scram" => secured(builder, "SCRAM-SHA-512")
            .set("sasl.username", std::env::var("KAFKA_USER")?)
            .set("sasl.password", std::env::var("KAFKA_PASSWORD")?),
        "oauth" => secured(builder, "OAUTHBEARER").client_callbacks(Arc::new(TokenSource {
            principal: "billing".into(),
            lifetime: Duration::from_secs(300),
        })),
        _ => return Err(usage.into()),
    };
    // A wrong password or an unknown mechanism ends `run` with `Error::Refused`, not a wait.
    let consumer = builder.build()?;

    let handler = |record: Record| async move {
        tracing::info!(offset = record.offset(), "processing");
        Ok::<(), HandlerError>(())
    };
    let shutdown = async {
        tokio::signal::ctrl_c().await.ok();
    };
    consumer.run(handler, shutdown).await?;
    Ok(())
}
