//! Shared by the service's end-to-end tests: a topic and database of their own, the service
//! started in-process (API and consumer as separate instances, so the consumer can be restarted
//! while the API keeps taking updates), an HTTP client, and polling for conditions.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kafkaesque_runtime::headers;
use kafkaesque_subscribers::config::{HttpLimits, RateLimit};
use kafkaesque_subscribers::{Config, Roles};
use kafkaesque_testkit::{
    require_broker, require_postgres, unique_name, Broker, TestDatabase, TestTopic,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// At least `MIN_ADMIN_TOKEN_CHARS` long, like every admin token the service accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token-of-the-subscribers-suite";

/// Start-up and shutdown must each finish within this.
pub const WITHIN: Duration = Duration::from_secs(60);

/// A broker topic and a database for one test, and the configuration pointing at them.
pub struct Rig {
    pub broker: Broker,
    pub topic: TestTopic,
    pub database: TestDatabase,
    pub config: Config,
}

impl Rig {
    pub async fn new(prefix: &str, partitions: i32) -> Rig {
        Rig::on(require_broker().await, prefix, partitions).await
    }

    /// A rig on `broker`: the local broker, or the three-broker cluster.
    pub async fn on(broker: Broker, prefix: &str, partitions: i32) -> Rig {
        let postgres = require_postgres().await;
        let topic = broker
            .create_topic(prefix, partitions)
            .await
            .expect("topic");
        let database = postgres.reserve_database(prefix);
        let config = Config {
            kafka_brokers: broker.bootstrap_servers().to_owned(),
            database: database.config().clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(ADMIN_TOKEN.into()),
            // No test is about the rate limit but those that set their own: the rest send as
            // fast as they can, and must never be refused for it.
            rate_limit: RateLimit {
                per_second: 1_000_000,
                burst: 1_000_000,
            },
            // Nor by the edge's cap on requests in flight; the tests of the edge set their own.
            http: HttpLimits {
                max_requests_in_flight: 100_000,
                ..HttpLimits::default()
            },
            topic: topic.name().to_owned(),
            partitions,
            group_id: unique_name(prefix),
            pool_size: 8,
            concurrency: 128,
            // The local broker may be one node; a cluster's topics get its replication.
            single_node_broker: broker.brokers() == 1,
            // Acknowledge at once: the tests send one update after another.
            producer_properties: vec![("linger.ms".into(), "0".into())],
            // A killed consumer's partitions move within seconds.
            consumer_properties: vec![
                ("session.timeout.ms".into(), "6000".into()),
                ("heartbeat.interval.ms".into(), "1000".into()),
            ],
            ..Config::default()
        };
        Rig {
            broker,
            topic,
            database,
            config,
        }
    }

    /// Writes one record straight into the topic, as no API would (a buggy or hostile
    /// producer, or a write the API acknowledged before a refusal took effect).
    pub async fn produce(&self, key: &[u8], payload: &[u8]) {
        let producer: FutureProducer = self
            .broker
            .client_config()
            .set("message.max.bytes", "2000000")
            .create()
            .expect("producer");
        producer
            .send(
                FutureRecord::to(self.topic.name())
                    .key(key)
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .expect("the broker takes the record");
    }

    pub fn dead_letter_topic(&self) -> String {
        format!("{}.dlq", self.topic.name())
    }

    /// A consumer of the dead-letter topic's partition 0, from its beginning.
    pub fn dead_letter_reader(&self) -> BaseConsumer {
        self.reader(&self.dead_letter_topic())
    }

    /// A consumer of the topic's partition 0, from its beginning: what the API wrote.
    pub fn reader_from_start(&self) -> BaseConsumer {
        self.reader(self.topic.name())
    }

    fn reader(&self, topic: &str) -> BaseConsumer {
        let c: BaseConsumer = self
            .broker
            .group_config(&unique_name("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).expect("assign");
        c
    }

    /// Records in the topic's partition 0: what the API has written.
    pub fn written(&self) -> i64 {
        let c: BaseConsumer = self.broker.client_config().create().expect("consumer");
        let (low, high) = c
            .fetch_watermarks(self.topic.name(), 0, Duration::from_secs(10))
            .expect("watermarks");
        high - low
    }
}

/// Every dead letter's reason, by the `marker` its payload contains, once all of `markers` are
/// there.
pub fn dead_letters(rig: &Rig, markers: &[String]) -> HashMap<String, String> {
    let c = rig.dead_letter_reader();
    let mut found = HashMap::new();
    let deadline = Instant::now() + WITHIN;
    while found.len() < markers.len() {
        assert!(
            Instant::now() < deadline,
            "dead letters in time: have {found:?}"
        );
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        let Some(marker) = markers.iter().find(|k| payload.contains(k.as_str())) else {
            continue;
        };
        let reason = m
            .headers()
            .and_then(|hs| hs.iter().find(|h| h.key == headers::REASON))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| panic!("no reason header on the dead letter of {marker}"));
        found.insert(marker.clone(), reason);
    }
    found
}

/// One running instance of the service and the means to stop it.
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<kafkaesque_subscribers::Result<()>>,
}

impl Running {
    pub async fn start(config: &Config, roles: Roles) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(kafkaesque_subscribers::run(
            listener,
            config.clone(),
            roles,
            shutdown,
        ));
        let running = Running { addr, stop, task };
        let client = running.client();
        eventually("the service answers /healthz", WITHIN, || async {
            client.call(Method::GET, "/healthz", None, None).await.ok()
        })
        .await;
        running
    }

    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: format!("http://{}", self.addr),
        }
    }

    /// Completes the shutdown future and waits for a clean stop.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WITHIN, self.task)
            .await
            .expect("stops in time")
            .expect("task")
            .expect("stops cleanly");
    }
}

/// Polls `check` until it gives a value, for at most `limit`; panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP client for one instance.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// An app and its key.
#[derive(Debug, Clone)]
pub struct App {
    pub id: Uuid,
    pub key: String,
}

impl Client {
    /// Any request; `auth` is the whole `Authorization` header value.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// `call`, expecting it to go through.
    pub async fn must(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, auth, body).await.expect("request")
    }

    pub async fn create_app(&self, name: &str) -> App {
        let admin = format!("Bearer {ADMIN_TOKEN}");
        let body = json!({ "name": name });
        let (status, v) = self
            .must(Method::POST, "/api/v1/apps", Some(&admin), Some(&body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        App {
            id: v["id"].as_str().unwrap().parse().unwrap(),
            key: v["api_key"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn create_player(&self, app: &App, body: Value) -> Uuid {
        let (status, v) = self
            .must(
                Method::POST,
                "/api/v1/players",
                Some(&app.auth()),
                Some(&body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn update(&self, app: &App, id: Uuid, body: &Value) {
        let path = format!("/api/v1/players/{id}");
        let (status, v) = self
            .must(Method::PUT, &path, Some(&app.auth()), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v, json!({"success": true}));
    }

    /// A new subscription of `app` linked to the email subscription of `email`, with `tags`
    /// (mirrored onto its parent): the child and the parent, once the link is applied.
    pub async fn linked_child(&self, app: &App, email: &str, tags: Value) -> (Uuid, Uuid) {
        let child = self
            .create_player(app, json!({"app_id": app.id, "device_type": 1}))
            .await;
        let linking = json!({"app_id": app.id, "email": email, "tags": tags});
        self.update(app, child, &linking).await;
        let parent = eventually("the child linked", WITHIN, || async {
            let (s, v) = self.player(app, child).await;
            let parent = v["parent_player_id"].as_str()?.parse().ok()?;
            (s == StatusCode::OK).then_some(parent)
        })
        .await;
        (child, parent)
    }

    pub async fn player(&self, app: &App, id: Uuid) -> (StatusCode, Value) {
        let path = format!("/api/v1/players/{id}?app_id={}", app.id);
        self.must(Method::GET, &path, Some(&app.auth()), None).await
    }
}

impl App {
    pub fn auth(&self) -> String {
        format!("Key {}", self.key)
    }
}

impl Client {
    /// A request with a body sent as it is (not necessarily JSON).
    pub async fn http_raw(
        &self,
        method: Method,
        path: &str,
        auth: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", auth)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}
