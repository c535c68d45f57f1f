//! The user's own librdkafka callbacks, and how every client context of the runtime hands them
//! on.
//!
//! Why a trait of our own and not rdkafka's `ClientContext`: the runtime's contexts already
//! implement it (rebalances, commits, deliveries, statistics), one per client, and a user's
//! context cannot replace them. Each of them instead holds the user's [`ClientCallbacks`] and
//! forwards to it what is the user's to decide: tokens, logs, errors, statistics.

use std::error::Error as StdError;
use std::sync::Arc;

use rdkafka::client::{ClientContext, DefaultClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

/// Callbacks of the user's for every Kafka client the consumer makes (the group consumer, the
/// overflow consumer, the dead-letter/overflow producer, the admin client). Given with
/// [`ConsumerBuilder::client_callbacks`](crate::ConsumerBuilder::client_callbacks); every
/// method has a default, so an implementation overrides only what it needs.
///
/// **Threads.** librdkafka calls these from whichever thread polls the client: the consumer's
/// driver thread for the consumers and the producer, a tokio worker for the admin client while
/// the consumer starts. Each call blocks that client's polling: keep them short, and fetch a
/// token from a cache kept fresh elsewhere rather than over the network where you can.
pub trait ClientCallbacks: Send + Sync + 'static {
    /// A fresh token for SASL `OAUTHBEARER`, when librdkafka asks (before the first connection
    /// and ahead of the current token's expiry). `oauthbearer_config` is the client's
    /// `sasl.oauthbearer.config` property. An `Err` is reported to librdkafka as a refresh
    /// failure, which it logs and retries.
    ///
    /// Not called under librdkafka's own token sources (`sasl.oauthbearer.method=oidc`, or
    /// `enable.sasl.oauthbearer.unsecure.jwt`), which refresh by themselves.
    fn oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn StdError>> {
        let _ = oauthbearer_config;
        Err(
            "sasl.mechanism is OAUTHBEARER but no token source was given: implement \
             ClientCallbacks::oauth_token and pass it to ConsumerBuilder::client_callbacks"
                .into(),
        )
    }

    /// A log line from librdkafka. By default it goes where rdkafka sends it (the `log` crate).
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        DefaultClientContext.log(level, facility, message);
    }

    /// An error librdkafka reports through the context of the producer or the admin client (a
    /// broker down, all brokers down, a refused login). The consumers' errors reach the
    /// consumer's loop instead, which logs them and stops on fatal ones. By default, logged as
    /// rdkafka does.
    fn error(&self, error: &KafkaError, reason: &str) {
        DefaultClientContext.error(error.clone(), reason);
    }

    /// librdkafka's statistics of the group consumer, every `statistics.interval.ms` (5 s
    /// unless set). Called after the consumer has read what it needs from them.
    fn stats(&self, statistics: &Statistics) {
        let _ = statistics;
    }
}

/// The user's callbacks as each runtime context holds them: `None` behaves as rdkafka's
/// default context does.
#[derive(Clone, Default)]
pub(crate) struct UserCallbacks(pub(crate) Option<Arc<dyn ClientCallbacks>>);

/// The defaults, for a consumer given no callbacks.
struct NoCallbacks;

impl ClientCallbacks for NoCallbacks {}

impl UserCallbacks {
    fn get(&self) -> &dyn ClientCallbacks {
        self.0.as_deref().unwrap_or(&NoCallbacks)
    }

    pub(crate) fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.get().log(level, facility, message);
    }

    pub(crate) fn error(&self, error: KafkaError, reason: &str) {
        self.get().error(&error, reason);
    }

    pub(crate) fn oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn StdError>> {
        self.get().oauth_token(oauthbearer_config)
    }

    pub(crate) fn stats(&self, statistics: &Statistics) {
        self.get().stats(statistics);
    }
}

impl std::fmt::Debug for UserCallbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

/// The part of `rdkafka::ClientContext` that every runtime context forwards to its `user:
/// UserCallbacks` field. `ENABLE_REFRESH_OAUTH_TOKEN` is on for all of them: librdkafka raises
/// the refresh event only when none of its own token sources is configured, and then a token
/// must come from the user.
macro_rules! forward_user_callbacks {
    () => {
        const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

        fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
            self.user.log(level, facility, message);
        }

        fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
            self.user.error(error, reason);
        }

        fn generate_oauth_token(
            &self,
            oauthbearer_config: Option<&str>,
        ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
            self.user.oauth_token(oauthbearer_config)
        }
    };
}
pub(crate) use forward_user_callbacks;

/// The admin and metadata clients' context: the user's callbacks and nothing else.
pub(crate) struct AdminContext {
    user: UserCallbacks,
}

impl AdminContext {
    pub(crate) fn new(user: UserCallbacks) -> Self {
        AdminContext { user }
    }
}

impl ClientContext for AdminContext {
    forward_user_callbacks!();
}

impl rdkafka::consumer::ConsumerContext for AdminContext {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rdkafka::client::OAuthToken;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::BaseConsumer;

    use super::{AdminContext, ClientCallbacks, UserCallbacks};

    #[derive(Default)]
    struct Tokens {
        calls: AtomicUsize,
        config: Mutex<Option<String>>,
    }

    impl ClientCallbacks for Tokens {
        fn oauth_token(
            &self,
            config: Option<&str>,
        ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
            *self.config.lock().unwrap() = config.map(str::to_owned);
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(OAuthToken {
                token: "e30.e30.".into(),
                principal_name: "billing".into(),
                lifetime_ms: i64::MAX,
            })
        }
    }

    #[test]
    fn an_oauthbearer_client_asks_the_users_callbacks_for_its_token() {
        let tokens = Arc::new(Tokens::default());
        let client: BaseConsumer<AdminContext> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "OAUTHBEARER")
            .set("sasl.oauthbearer.config", "scope=billing")
            .create_with_context(AdminContext::new(UserCallbacks(Some(tokens.clone()))))
            .expect("client");
        // librdkafka asks for a token as the client starts, on the thread that polls it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokens.calls.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            let _ = client.poll(Duration::from_millis(100));
        }
        assert!(tokens.calls.load(Ordering::SeqCst) >= 1, "never asked");
        assert_eq!(
            tokens.config.lock().unwrap().as_deref(),
            Some("scope=billing")
        );
    }
}
