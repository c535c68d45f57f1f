//! Who may call what: app keys (`Authorization: Key <api key>`) for the subscriber API, the admin
//! token (`Authorization: Bearer <token>`) for creating apps and the operator controls.
//!
//! Keys are stored as their SHA-256; a key's app is cached in memory after its first use (keys
//! are never revoked, so the cache cannot go stale).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;
use crate::store::Store;

/// A new random API key (32 bytes, hex) and the hash to store.
pub fn new_key() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let key = hex::encode(bytes);
    let hash = hash(&key);
    (key, hash)
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
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
    // Comparing digests keeps the comparison's time independent of where the strings differ.
    if hash(given) != hash(token) {
        return Err(ApiError::unauthorized("Authorization: wrong admin token"));
    }
    Ok(())
}

/// Resolves app keys to apps.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    known: Arc<RwLock<HashMap<Vec<u8>, Uuid>>>,
}

impl Keys {
    /// The app whose key the request carries: 401 without a valid one.
    pub async fn app(&self, headers: &HeaderMap, store: &Store) -> Result<Uuid, ApiError> {
        let key = credential(headers, "Key")
            .ok_or_else(|| ApiError::unauthorized("Authorization: expected `Key <app api key>`"))?;
        let hash = hash(key);
        if let Some(app) = self.known.read().expect("keys lock").get(&hash) {
            return Ok(*app);
        }
        let app = store
            .app_for_key(&hash)
            .await?
            .ok_or_else(|| ApiError::unauthorized("Authorization: unknown api key"))?;
        self.known.write().expect("keys lock").insert(hash, app);
        Ok(app)
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
