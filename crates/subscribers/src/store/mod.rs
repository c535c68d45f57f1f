//! The PostgreSQL store: a bounded pool, and every statement the service runs, each in its own
//! `.sql` file under `sql/`.
//!
//! [`Store`] holds what the API and the operator controls need; [`rows`] the statements the
//! consumer runs inside one row's transaction.

pub mod rows;

use std::collections::HashSet;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use uuid::Uuid;

use crate::{Error, Result};

/// How long a request waits for a free connection before it fails (and the consumer's handler
/// reports a transient failure, to be retried).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// What an operator can skip (see [`crate::skip`]): a row of the `skips` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipTarget {
    App(Uuid),
    Player(Uuid),
}

impl SkipTarget {
    /// The `target` column of the `skips` table.
    pub fn kind(&self) -> &'static str {
        match self {
            SkipTarget::App(_) => "app",
            SkipTarget::Player(_) => "player",
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            SkipTarget::App(id) | SkipTarget::Player(id) => *id,
        }
    }
}

/// A cheap-to-clone handle on the pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("status", &self.pool.status())
            .finish()
    }
}

/// A subscription as `GET /api/v1/players/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlayerView {
    pub id: Uuid,
    pub app_id: Uuid,
    pub device_type: i32,
    pub identifier: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<i32>,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub country: Option<String>,
    pub tags: serde_json::Value,
    pub external_user_id: Option<String>,
    pub parent_player_id: Option<Uuid>,
    /// Seconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// A pool of at most `size` connections. The pool size is the ceiling on what the service
    /// asks of the database, however many handlers and requests run at once.
    pub fn new(
        database: &tokio_postgres::Config,
        tls: &crate::db::Tls,
        size: usize,
    ) -> Result<Self> {
        let manager = Manager::from_config(
            database.clone(),
            tls.connector()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CHECKOUT_TIMEOUT))
            .create_timeout(Some(CHECKOUT_TIMEOUT))
            .build()
            .map_err(|e| Error::Config(format!("database pool: {e}")))?;
        Ok(Store { pool })
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    pub async fn create_app(&self, id: Uuid, name: &str, key_hash: &[u8]) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            include_str!("../../sql/app_insert.sql"),
            &[&id, &name, &key_hash],
        )
        .await?;
        Ok(())
    }

    /// Gives app `id` the key of `key_hash`, or none (`None`: revoked); whether the app exists.
    pub async fn replace_key(&self, id: Uuid, key_hash: Option<&[u8]>) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                include_str!("../../sql/app_key_replace.sql"),
                &[&id, &key_hash],
            )
            .await?;
        Ok(n > 0)
    }

    pub async fn app_for_key(&self, key_hash: &[u8]) -> Result<Option<Uuid>> {
        let c = self.client().await?;
        let row = c
            .query_opt(include_str!("../../sql/app_by_key.sql"), &[&key_hash])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn player(&self, app_id: Uuid, id: Uuid) -> Result<Option<PlayerView>> {
        let c = self.client().await?;
        let row = c
            .query_opt(include_str!("../../sql/player_get.sql"), &[&id, &app_id])
            .await?;
        Ok(row.map(|r| PlayerView {
            id: r.get("id"),
            app_id: r.get("app_id"),
            device_type: r.get("device_type"),
            identifier: r.get("identifier"),
            language: r.get("language"),
            timezone: r.get("timezone"),
            lat: r.get("lat"),
            long: r.get("long"),
            country: r.get("country"),
            tags: r.get("tags"),
            external_user_id: r.get("external_user_id"),
            parent_player_id: r.get("parent_player_id"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        }))
    }

    /// Every link as `(app, child, parent)`: what the consumer's router starts from.
    pub async fn links(&self) -> Result<Vec<(Uuid, Uuid, Uuid)>> {
        let c = self.client().await?;
        let rows = c
            .query(include_str!("../../sql/links_all.sql"), &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    pub async fn skips(&self) -> Result<HashSet<SkipTarget>> {
        let c = self.client().await?;
        let rows = c
            .query(include_str!("../../sql/skips_all.sql"), &[])
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let id: Uuid = r.get(1);
                match r.get::<_, &str>(0) {
                    "app" => Some(SkipTarget::App(id)),
                    "player" => Some(SkipTarget::Player(id)),
                    _ => None,
                }
            })
            .collect())
    }

    pub async fn add_skip(&self, target: SkipTarget) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            include_str!("../../sql/skip_add.sql"),
            &[&target.kind(), &target.id()],
        )
        .await?;
        Ok(())
    }

    /// Whether it was there.
    pub async fn remove_skip(&self, target: SkipTarget) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                include_str!("../../sql/skip_remove.sql"),
                &[&target.kind(), &target.id()],
            )
            .await?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafkaesque_testkit::require_postgres;

    use super::Store;
    use crate::Config;

    #[tokio::test]
    async fn pooled_sessions_carry_the_timeouts_and_keepalives() {
        let database = require_postgres()
            .await
            .create_database("session")
            .await
            .expect("database");
        let config = Config {
            database: database.config().clone(),
            statement_timeout: Duration::from_millis(1500),
            idle_in_transaction_timeout: Duration::from_millis(2500),
            ..Config::default()
        };
        let pooled = config.pooled_database();
        assert!(pooled.get_keepalives());
        assert_eq!(pooled.get_keepalives_idle(), Duration::from_secs(30));
        let store = Store::new(&pooled, &crate::db::Tls::default(), 1).expect("pool");
        let c = store.client().await.expect("connection");
        let show = |name: &'static str| {
            let c = &c;
            async move {
                let row = c.query_one(&format!("SHOW {name}"), &[]).await.unwrap();
                row.get::<_, String>(0)
            }
        };
        assert_eq!(show("statement_timeout").await, "1500ms");
        assert_eq!(show("idle_in_transaction_session_timeout").await, "2500ms");
        let slow = c.simple_query("SELECT pg_sleep(3)").await.unwrap_err();
        let code = slow.code().cloned();
        assert_eq!(
            code,
            Some(tokio_postgres::error::SqlState::QUERY_CANCELED),
            "{slow:?}"
        );
    }
}
