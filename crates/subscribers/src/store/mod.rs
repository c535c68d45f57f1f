//! The PostgreSQL store: a bounded pool, and every statement the service runs, each in its own
//! `.sql` file under `sql/`.
//!
//! [`Store`] holds what the API and the operator controls need; [`rows`] the statements the
//! consumer runs inside one row's transaction.

pub mod rows;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, QueueMode, RecyclingMethod, Runtime};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::message::Device;
use crate::{Error, Result};

/// How long a request waits for a free connection before it fails (and the consumer's handler
/// reports a transient failure, to be retried).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Subscriptions as the API shows them, one or a page.
const VIEW: &str = include_str!("../../sql/players_view.sql");

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

/// A subscription as `GET /api/v1/players/{id}` shows it: OneSignal's field names and types,
/// what is unset left out (OneSignal's typed clients refuse a `null` where they expect a number),
/// timestamps in Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PlayerView {
    pub id: Uuid,
    pub app_id: Uuid,
    pub device_type: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub tags: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    /// The email subscription this one is linked to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_player_id: Option<Uuid>,
    /// What the device reports; `created_at` is when the subscription was created here unless
    /// the app gave its own.
    #[serde(flatten)]
    pub device: Device,
    /// Unix seconds: the last change applied.
    pub updated_at: i64,
}

impl PlayerView {
    fn from_row(r: &tokio_postgres::Row) -> Self {
        let mut device = Device::from_json(r.get("device"));
        device.created_at = device.created_at.or(Some(r.get("created_at")));
        let tags: serde_json::Value = r.get("tags");
        PlayerView {
            id: r.get("id"),
            app_id: r.get("app_id"),
            device_type: r.get("device_type"),
            identifier: r.get("identifier"),
            language: r.get("language"),
            timezone: r.get("timezone"),
            lat: r.get("lat"),
            long: r.get("long"),
            country: r.get("country"),
            tags: serde_json::from_value(tags).unwrap_or_default(),
            external_user_id: r.get("external_user_id"),
            parent_player_id: r.get("parent_player_id"),
            device,
            updated_at: r.get("updated_at"),
        }
    }
}

impl Store {
    /// A pool of at most `size` connections. The pool size is the ceiling on what the service
    /// asks of the database, however many handlers and requests run at once.
    ///
    /// The connection freed last is handed out first: at a low rate the same few backends do
    /// all the work, warm in the CPU's caches, instead of every backend process in turn being
    /// woken cold; under load every connection is busy either way.
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
            .queue_mode(QueueMode::Lifo)
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

    /// Forgets the tombstones of rows deleted more than `older_than` ago, `batch` at a time;
    /// returns how many went.
    pub async fn prune_tombstones(&self, older_than: Duration, batch: i64) -> Result<u64> {
        let c = self.client().await?;
        let statement = c
            .prepare_cached(include_str!("../../sql/tombstones_prune.sql"))
            .await?;
        let mut pruned = 0;
        loop {
            let n = c
                .execute(&statement, &[&older_than.as_secs_f64(), &batch])
                .await?;
            pruned += n;
            if n < u64::try_from(batch).unwrap_or(0) {
                return Ok(pruned);
            }
        }
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
            .query_opt(VIEW, &[&app_id, &Some(id), &1_i64, &0_i64])
            .await?;
        Ok(row.as_ref().map(PlayerView::from_row))
    }

    /// A page of `app_id`'s subscriptions by id, and how many the app has.
    pub async fn players(
        &self,
        app_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<PlayerView>)> {
        let c = self.client().await?;
        let none: Option<Uuid> = None;
        let rows = c.query(VIEW, &[&app_id, &none, &limit, &offset]).await?;
        let total = c
            .query_one(include_str!("../../sql/players_count.sql"), &[&app_id])
            .await?;
        Ok((
            total.get(0),
            rows.iter().map(PlayerView::from_row).collect(),
        ))
    }

    /// The ids of `app_id`'s subscriptions carrying `external_user_id`, at most `max`.
    pub async fn players_of_user(
        &self,
        app_id: Uuid,
        external_user_id: &str,
        max: i64,
    ) -> Result<Vec<Uuid>> {
        let c = self.client().await?;
        let rows = c
            .query(
                include_str!("../../sql/players_of_user.sql"),
                &[&app_id, &external_user_id, &max],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
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
