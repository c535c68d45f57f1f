//! Where the load goes: the HTTP API of a running service, or straight into its topic with the
//! service's own producer and message type (`--direct`), so that the records are byte for byte
//! what the API writes, at rates the HTTP edge cannot reach.

use std::future::Future;

use anyhow::{bail, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use kafkaesque_subscribers::message::{Fields, Message, NewPlayer};
use kafkaesque_subscribers::producer::Producer;
use kafkaesque_subscribers::store::Store;
use kafkaesque_subscribers::Config;
use serde_json::{json, Value};
use uuid::Uuid;

use super::traffic::{http_body, App, Planned};

/// Requests in flight while apps and subscriptions are created.
const SETUP_IN_FLIGHT: usize = 32;

/// How many subscriptions each of `apps` apps gets out of `subscriptions`: in the incident the
/// first (flooding) app has half of them, the others share the rest.
pub fn split(apps: usize, subscriptions: usize, incident: bool) -> Vec<usize> {
    let apps = apps.max(1);
    let subscriptions = subscriptions.max(apps);
    let (first, rest) = if incident && apps > 1 {
        (subscriptions / 2, subscriptions - subscriptions / 2)
    } else {
        (0, subscriptions)
    };
    let others = if first > 0 { apps - 1 } else { apps };
    let mut counts: Vec<usize> = (0..others)
        .map(|i| rest / others + usize::from(i < rest % others))
        .collect();
    if first > 0 {
        counts.insert(0, first);
    }
    counts
}

/// The HTTP API of a running service, with one API key per app.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    client: reqwest::Client,
    base: String,
    keys: Vec<String>,
}

impl HttpTarget {
    /// Creates `counts.len()` apps (with the admin token) and `counts[i]` subscriptions in app
    /// `i`, through the API at `base`.
    ///
    /// # Errors
    /// When the API refuses a request or cannot be reached.
    pub async fn setup(
        base: &str,
        admin_token: &str,
        counts: &[usize],
    ) -> Result<(HttpTarget, Vec<App>)> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(4_096)
            .build()?;
        let mut target = HttpTarget {
            client,
            base: base.trim_end_matches('/').to_owned(),
            keys: Vec::new(),
        };
        let mut apps = Vec::new();
        for (i, &n) in counts.iter().enumerate() {
            let created = target
                .call(
                    reqwest::Method::POST,
                    "/api/v1/apps",
                    &format!("Bearer {admin_token}"),
                    &json!({ "name": format!("load-{i}") }),
                )
                .await?;
            let id: Uuid = serde_json::from_value(created["id"].clone()).context("app id")?;
            let key = created["api_key"].as_str().context("api_key")?.to_owned();
            target.keys.push(key.clone());
            let auth = format!("Key {key}");
            let t = &target;
            let players: Vec<Uuid> = stream::iter(0..n)
                .map(|_| {
                    let auth = auth.clone();
                    async move {
                        let body = json!({ "app_id": id, "device_type": 1, "language": "en" });
                        let v = t
                            .call(reqwest::Method::POST, "/api/v1/players", &auth, &body)
                            .await?;
                        Ok::<Uuid, anyhow::Error>(serde_json::from_value(v["id"].clone())?)
                    }
                })
                .buffer_unordered(SETUP_IN_FLIGHT)
                .try_collect()
                .await?;
            apps.push(App { id, players });
        }
        Ok((target, apps))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &str,
        body: &Value,
    ) -> Result<Value> {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", auth)
            .json(body)
            .send()
            .await
            .with_context(|| format!("{path} at {}", self.base))?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// `PUT /api/v1/players/{id}` of `planned`; an error is the status or the failure's kind.
    pub fn send(
        &self,
        planned: Planned,
    ) -> impl Future<Output = Result<Option<(i32, i64)>, String>> + Send + 'static {
        let request = self
            .client
            .put(format!(
                "{}/api/v1/players/{}",
                self.base, planned.update.player_id
            ))
            .header("Authorization", format!("Key {}", self.keys[planned.app]))
            .json(&http_body(&planned.update));
        async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    Ok(None)
                }
                Ok(r) => Err(r.status().as_u16().to_string()),
                Err(e) if e.is_connect() => Err("connect".to_owned()),
                Err(e) if e.is_timeout() => Err("timeout".to_owned()),
                Err(_) => Err("transport".to_owned()),
            }
        }
    }
}

/// The service's topic, written with the service's producer.
#[derive(Debug, Clone)]
pub struct DirectTarget {
    producer: Producer,
}

impl DirectTarget {
    /// Creates the apps in the database (`config.database`; the records' rows refer to them) and
    /// their subscriptions as create records in `config.topic`; returns where the broker put
    /// those records, too.
    ///
    /// # Errors
    /// When the database or the broker refuses.
    pub async fn setup(
        config: &Config,
        counts: &[usize],
    ) -> Result<(DirectTarget, Vec<App>, Vec<(i32, i64)>)> {
        let store = Store::new(&config.database, &config.database_tls, 4)?;
        let target = DirectTarget {
            producer: Producer::new(config)?,
        };
        let (mut apps, mut delivered) = (Vec::new(), Vec::new());
        for (i, &n) in counts.iter().enumerate() {
            let id = Uuid::new_v4();
            let key_hash = Uuid::new_v4().as_bytes().to_vec();
            store
                .create_app(id, &format!("load-{i}"), &key_hash)
                .await?;
            let players: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
            let producer = &target.producer;
            let created = stream::iter(players.iter().copied())
                .map(|player_id| async move {
                    let create = Message::Create(NewPlayer {
                        player_id,
                        app_id: id,
                        device_type: 1,
                        identifier: None,
                        fields: Fields {
                            language: Some("en".to_owned()),
                            ..Fields::default()
                        },
                        tags: Default::default(),
                    });
                    producer.send(&create).await
                })
                .buffer_unordered(SETUP_IN_FLIGHT * 32)
                .try_collect::<Vec<_>>()
                .await?;
            delivered.extend(created);
            apps.push(App { id, players });
        }
        Ok((target, apps, delivered))
    }

    /// Writes `planned` and waits for the broker's acknowledgement.
    pub fn send(
        &self,
        planned: Planned,
    ) -> impl Future<Output = Result<Option<(i32, i64)>, String>> + Send + 'static {
        let producer = self.producer.clone();
        async move {
            producer
                .send(&Message::Update(planned.update))
                .await
                .map(Some)
                .map_err(|e| match e.rdkafka_error_code() {
                    Some(code) => format!("{code:?}"),
                    None => "kafka".to_owned(),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn subscriptions_are_split_evenly_or_half_to_the_flood() {
        assert_eq!(split(3, 10, false), vec![4, 3, 3]);
        assert_eq!(split(3, 10, true), vec![5, 3, 2]);
        assert_eq!(split(1, 10, true), vec![10]);
        assert_eq!(split(4, 2, false), vec![1, 1, 1, 1], "at least one each");
    }
}
