//! Who may call what: app keys (`Authorization: Key <api key>`, or `Bearer`, `Basic`) for the
//! subscriber API, the admin token (`Authorization: Bearer <token>`) for creating apps, re-keying
//! them and the operator controls.
//!
//! Keys are stored as their SHA-256. What a process learns of a key is cached for the
//! configured TTL (a few seconds): a key rotated or revoked through another process stops
//! working here within it. Unknown keys are cached too, longer and in a bounded number, so a
//! flood of bad keys is refused from memory; the lookups of keys not cached yet run a few at a
//! time, so even distinct random keys hold at most [`MISS_LOOKUPS`] database connections.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::error::ApiError;
use crate::store::Store;

/// How long an unknown key is remembered. New keys are random, so none was ever asked for
/// before it existed: remembering that a key is unknown cannot refuse a real key.
pub const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(60);

/// Unknown keys remembered at most; beyond, the oldest half is forgotten.
pub const MAX_UNKNOWN_KEYS: usize = 10_000;

/// Key lookups in the database at once, for keys the cache does not hold.
pub const MISS_LOOKUPS: usize = 4;

/// The schemes an app key may come under: `Key` as OneSignal documents it now; `Bearer` and
/// `Basic` as its clients have sent it over the years (`Basic` with the key itself, not a
/// base64 user and password). The admin token is a `Bearer` credential too, but of other
/// endpoints: an app endpoint looks the credential up as an app key only.
pub const APP_KEY_SCHEMES: [&str; 3] = ["Key", "Bearer", "Basic"];

/// A new random API key (32 bytes, hex) and the hash to store.
pub fn new_key() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let key = hex::encode(bytes);
    let hash = hash(&key).to_vec();
    (key, hash)
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The credential after `scheme` in the `Authorization` header.
fn credential<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (s, credential) = value.trim().split_once(' ')?;
    (s.eq_ignore_ascii_case(scheme) && !credential.trim().is_empty()).then(|| credential.trim())
}

/// Checks the admin token. While none is configured every request is refused.
pub fn admin(headers: &HeaderMap, token: Option<&str>) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Err(ApiError::forbidden(
            "admin endpoints are disabled: KAFKAESQUE_ADMIN_TOKEN is not set",
        ));
    };
    let given = credential(headers, "Bearer")
        .ok_or_else(|| ApiError::unauthorized("Authorization: expected `Bearer <admin token>`"))?;
    // Digests have one length whatever was sent, and `ct_eq` takes the same time wherever
    // they differ: the answer's timing tells nothing about the token.
    if !bool::from(hash(given).ct_eq(&hash(token))) {
        return Err(ApiError::unauthorized("Authorization: wrong admin token"));
    }
    Ok(())
}

/// What the cache knows of one key hash: its app, or that it has none, until `until`.
#[derive(Debug, Clone, Copy)]
struct Known {
    app: Option<Uuid>,
    until: Instant,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], Known>,
    unknown: usize,
}

impl Cache {
    fn get(&self, hash: &[u8; 32], now: Instant) -> Option<Option<Uuid>> {
        self.entries
            .get(hash)
            .filter(|k| k.until > now)
            .map(|k| k.app)
    }

    fn insert(&mut self, hash: [u8; 32], known: Known, now: Instant) {
        if known.app.is_none() && self.unknown >= MAX_UNKNOWN_KEYS {
            self.entries.retain(|_, k| k.until > now);
            self.recount();
            if self.unknown >= MAX_UNKNOWN_KEYS {
                // Still full of live ones: forget those that expire first.
                let mut ends: Vec<Instant> = self
                    .entries
                    .values()
                    .filter(|k| k.app.is_none())
                    .map(|k| k.until)
                    .collect();
                ends.sort_unstable();
                let cut = ends[ends.len() / 2];
                self.entries.retain(|_, k| k.app.is_some() || k.until > cut);
                self.recount();
            }
        }
        if let Some(old) = self.entries.insert(hash, known) {
            self.unknown -= usize::from(old.app.is_none());
        }
        self.unknown += usize::from(known.app.is_none());
    }

    fn recount(&mut self) {
        self.unknown = self.entries.values().filter(|k| k.app.is_none()).count();
    }
}

/// Resolves app keys to apps.
#[derive(Clone)]
pub struct Keys {
    cache: Arc<RwLock<Cache>>,
    lookups: Arc<Semaphore>,
    ttl: Duration,
}

/// Counts only: the cache holds hashes of credentials.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.cache.read().expect("keys lock");
        f.debug_struct("Keys")
            .field("cached", &c.entries.len())
            .field("unknown", &c.unknown)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Keys {
    /// A cache whose knowledge of a real key lasts `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Keys {
            cache: Arc::default(),
            lookups: Arc::new(Semaphore::new(MISS_LOOKUPS)),
            ttl,
        }
    }

    /// The app whose key the request carries: 401 without a valid one.
    pub async fn app(&self, headers: &HeaderMap, store: &Store) -> Result<Uuid, ApiError> {
        let key = APP_KEY_SCHEMES
            .iter()
            .find_map(|scheme| credential(headers, scheme))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "Authorization: expected `Key <app api key>` (or `Bearer`, `Basic`)",
                )
            })?;
        let hash = hash(key);
        let unknown = || ApiError::unauthorized("Authorization: unknown api key");
        if let Some(app) = self.cached(&hash) {
            return app.ok_or_else(unknown);
        }
        let _permit = self.lookups.acquire().await.expect("never closed");
        // Another request may have looked the same key up while this one waited.
        if let Some(app) = self.cached(&hash) {
            return app.ok_or_else(unknown);
        }
        let app = store.app_for_key(&hash).await?;
        metrics::counter!("subscribers_key_lookups_total").increment(1);
        let now = Instant::now();
        let ttl = if app.is_some() {
            self.ttl
        } else {
            UNKNOWN_KEY_TTL
        };
        let known = Known {
            app,
            until: now + ttl,
        };
        self.cache
            .write()
            .expect("keys lock")
            .insert(hash, known, now);
        app.ok_or_else(unknown)
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Option<Uuid>> {
        self.cache
            .read()
            .expect("keys lock")
            .get(hash, Instant::now())
    }

    /// Forgets `app`'s key in this process at once (it was rotated or revoked here); other
    /// processes forget it within their TTL.
    pub fn forget_app(&self, app: Uuid) {
        let mut c = self.cache.write().expect("keys lock");
        c.entries.retain(|_, k| k.app != Some(app));
    }
}

/// 403 when the key's app is not the app the request names.
pub fn same_app(key_app: Uuid, app_id: Uuid) -> Result<(), ApiError> {
    if key_app != app_id {
        return Err(ApiError::forbidden(format!(
            "app_id: the api key does not belong to app {app_id}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_bounded_and_known_ones_survive_a_flood() {
        let mut c = Cache::default();
        let now = Instant::now();
        let real = hash("real");
        let app = Uuid::new_v4();
        let until = now + Duration::from_secs(5);
        c.insert(
            real,
            Known {
                app: Some(app),
                until,
            },
            now,
        );
        for i in 0..(3 * MAX_UNKNOWN_KEYS) {
            let until = now + Duration::from_millis(i as u64);
            c.insert(hash(&format!("bad-{i}")), Known { app: None, until }, now);
            assert!(
                c.unknown <= MAX_UNKNOWN_KEYS,
                "{} unknown at {i}",
                c.unknown
            );
        }
        assert!(c.entries.len() <= MAX_UNKNOWN_KEYS + 1);
        assert_eq!(c.get(&real, now), Some(Some(app)));
        let last = hash(&format!("bad-{}", 3 * MAX_UNKNOWN_KEYS - 1));
        assert_eq!(
            c.get(&last, now),
            Some(None),
            "the newest unknown key is kept"
        );
        assert_eq!(c.get(&real, until), None, "expired");
    }

    #[test]
    fn the_admin_token_must_match_exactly() {
        let token = "a-long-enough-admin-token-for-tests";
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(admin(&with(&format!("Bearer {token}")), Some(token)).is_ok());
        for wrong in [&token[..token.len() - 1], "", "x"] {
            let got = admin(&with(&format!("Bearer {wrong}")), Some(token));
            assert_eq!(got.unwrap_err().status, 401, "{wrong:?}");
        }
    }
}
