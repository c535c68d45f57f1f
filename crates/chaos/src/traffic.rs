//! The updates the run sends through the HTTP API, and the ledger of what the API acknowledged.
//!
//! Each subscription gets its own sender, which sends update 1, 2, 3 … one after another: update
//! `n` sets tag `seq` to `n` (so the row's final `seq` must be the last acknowledged `n`, and the
//! history of `seq` must never go down) and tag `s<n>` (so every acknowledged update leaves a
//! mark of its own in the row, even when the consumer coalesced it with others). A sender waits
//! for an answer before the next update; an update that gets no 200 (a timeout while the broker
//! is frozen, a 503) is sent again, as a real client would — the ledger counts those re-sends,
//! since each may legitimately be applied once more.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{Error, Result};

/// How long one request may take: longer than any broker freeze of the schedule.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Pause before an update that failed is sent again.
const RESEND_PAUSE: Duration = Duration::from_millis(500);
/// How long after the traffic stops a sender keeps re-sending its last update. An API that
/// still cannot write then is broken (Kafka is up by then), and the run must end and say so.
const GIVE_UP: Duration = Duration::from_secs(60);

/// A subscription the run updates, and its app's key.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub app: Uuid,
    pub id: Uuid,
    pub(crate) key: String,
}

/// What the API said to one subscription's updates.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// The last update answered 200; every one before it was answered 200 too.
    pub last_acked: u64,
    /// Requests made, re-sends included.
    pub requests: u64,
    /// Update → times it was sent again after a failure.
    pub resends: BTreeMap<u64, u32>,
    /// Answers 503 (the API could not write to Kafka), each followed by a re-send.
    pub unavailable: u64,
    /// Updates the API refused with a 4xx (it never should): `(n, status, body)`.
    pub refused: Vec<(u64, u16, String)>,
    /// The update still failing 60 s (`GIVE_UP`) after the traffic stopped, given up on.
    pub abandoned: Option<u64>,
}

/// Creates `apps` apps and `subscriptions` subscriptions spread over them (created with
/// `seq` = 0), through the API.
pub async fn set_up(
    api: &str,
    admin_token: &str,
    apps: usize,
    subscriptions: usize,
) -> Result<Vec<Subscription>> {
    let http = client()?;
    let mut keys = Vec::new();
    for i in 0..apps {
        let v: Value = http
            .post(format!("{api}/api/v1/apps"))
            .bearer_auth(admin_token)
            .json(&json!({ "name": format!("chaos-{i}") }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = v["id"].as_str().and_then(|s| s.parse().ok());
        let key = v["api_key"].as_str().map(str::to_owned);
        let (Some(id), Some(key)) = (id, key) else {
            return Err(Error::Setup(format!("POST /api/v1/apps answered {v}")));
        };
        keys.push((id, key));
    }
    let mut subs = Vec::new();
    for i in 0..subscriptions {
        let (app, key) = keys[i % apps].clone();
        let body = json!({"app_id": app, "device_type": 1, "tags": {"seq": "0"}});
        let v: Value = http
            .post(format!("{api}/api/v1/players"))
            .header("Authorization", format!("Key {key}"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let Some(id) = v["id"].as_str().and_then(|s| s.parse().ok()) else {
            return Err(Error::Setup(format!("POST /api/v1/players answered {v}")));
        };
        subs.push(Subscription { app, id, key });
    }
    Ok(subs)
}

fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// Sends updates to every subscription, `rate` a second each, until `stop` is set; then each
/// sender finishes the update it is on (until it is acknowledged) and the ledger is returned.
pub async fn drive(
    api: String,
    subs: Vec<Subscription>,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> Result<Vec<(Subscription, Sent)>> {
    let http = client()?;
    let pause = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut tasks = Vec::new();
    for (i, sub) in subs.into_iter().enumerate() {
        let (http, api, stop) = (http.clone(), api.clone(), stop.clone());
        // Spread the senders' start over one period so the load is even.
        let offset = pause.mul_f64(i as f64 / 97.0 % 1.0);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let sent = send_all(&http, &api, &sub, pause, &stop).await;
            (sub, sent)
        }));
    }
    let mut ledger = Vec::new();
    for t in tasks {
        ledger.push(
            t.await
                .map_err(|e| Error::Setup(format!("a sender panicked: {e}")))?,
        );
    }
    Ok(ledger)
}

async fn send_all(
    http: &reqwest::Client,
    api: &str,
    sub: &Subscription,
    pause: Duration,
    stop: &AtomicBool,
) -> Sent {
    let mut sent = Sent::default();
    let url = format!("{api}/api/v1/players/{}", sub.id);
    let mut n = 0;
    let mut stopped_at = None;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = json!({"app_id": sub.app, "tags": {"seq": n.to_string(), format!("s{n}"): "1"}});
        loop {
            if stop.load(Ordering::Relaxed) {
                let since = *stopped_at.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > GIVE_UP {
                    sent.abandoned = Some(n);
                    return sent;
                }
            }
            sent.requests += 1;
            let answer = http
                .put(&url)
                .header("Authorization", format!("Key {}", sub.key))
                .json(&body)
                .send()
                .await;
            match answer {
                Ok(r) if r.status() == StatusCode::OK => {
                    sent.last_acked = n;
                    break;
                }
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    sent.refused.push((n, status, text));
                    break;
                }
                // 5xx (Kafka unreachable) or no answer: the update may or may not be in the
                // topic; send it again, as a client would.
                answer => {
                    if answer.is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE) {
                        sent.unavailable += 1;
                    }
                    *sent.resends.entry(n).or_default() += 1;
                    tokio::time::sleep(RESEND_PAUSE).await;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
    sent
}
