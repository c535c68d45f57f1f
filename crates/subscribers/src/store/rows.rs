//! The statements the consumer runs (see [`crate::apply`]): updates of rows themselves, several
//! rows in one statement, and everything else in one transaction of one row.
//!
//! Every statement is prepared once per pooled connection (`prepare_cached`): preparing it on
//! each call would cost a round trip of its own, as many as running it.

use std::collections::{BTreeMap, HashMap, HashSet};

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row as PgRow;
use uuid::Uuid;

use crate::config::TagLimit;
use crate::message::{Device, Fields};

type Result<T> = std::result::Result<T, tokio_postgres::Error>;
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Runs `sql`, prepared once per connection, returning its rows.
async fn query(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Vec<PgRow>> {
    c.query(&c.prepare_cached(sql).await?, params).await
}

/// Runs `sql`, prepared once per connection, returning its row if any.
async fn query_opt(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Option<PgRow>> {
    c.query_opt(&c.prepare_cached(sql).await?, params).await
}

/// Runs `sql`, prepared once per connection, returning the rows it changed.
async fn execute(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<u64> {
    c.execute(&c.prepare_cached(sql).await?, params).await
}

/// A subscription row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub app_id: Uuid,
    pub device_type: i32,
    pub identifier: Option<String>,
    pub fields: Fields,
    pub tags: BTreeMap<String, String>,
    pub linked_children: i32,
    pub source_offset: i64,
}

/// What is left of a deleted row: its app, and the offset of the delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    pub app_id: Uuid,
    pub source_offset: i64,
}

/// A delivery that only updates its own row, folded into one change (see
/// [`crate::apply::plan::own_update`]): what [`update_own`] writes in one statement instead of
/// a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnUpdate {
    pub app_id: Uuid,
    pub fields: Fields,
    pub tags: BTreeMap<String, Option<String>>,
    /// The first change's offset: only a row below it has none of the changes yet.
    pub first: i64,
    /// The last change's offset: the row's new `source_offset`.
    pub last: i64,
}

/// The row, locked until the transaction ends; `None` when it does not exist.
pub async fn lock(c: &impl GenericClient, id: Uuid) -> Result<Option<Row>> {
    let row = query_opt(c, include_str!("../../sql/row_lock.sql"), &[&id]).await?;
    Ok(row.as_ref().map(from_pg))
}

/// The tombstone of a deleted row; `None` when it was never deleted.
pub async fn tombstone(c: &impl GenericClient, id: Uuid) -> Result<Option<Tombstone>> {
    let row = query_opt(c, include_str!("../../sql/tombstone_of.sql"), &[&id]).await?;
    Ok(row.map(|r| Tombstone {
        app_id: r.get("app_id"),
        source_offset: r.get("source_offset"),
    }))
}

/// Deletes the row of `app` with its links (as a parent), leaving its tombstone at `offset`;
/// returns the children that were linked to it.
pub async fn delete(c: &impl GenericClient, app: Uuid, id: Uuid, offset: i64) -> Result<Vec<Uuid>> {
    let children = query(
        c,
        include_str!("../../sql/links_delete_parent.sql"),
        &[&app, &id],
    )
    .await?;
    execute(
        c,
        include_str!("../../sql/row_delete.sql"),
        &[&id, &app, &offset],
    )
    .await?;
    Ok(children.iter().map(|r| r.get(0)).collect())
}

fn from_pg(r: &PgRow) -> Row {
    let tags: serde_json::Value = r.get("tags");
    let tags: BTreeMap<String, String> = serde_json::from_value(tags).unwrap_or_default();
    Row {
        app_id: r.get("app_id"),
        device_type: r.get("device_type"),
        identifier: r.get("identifier"),
        fields: Fields {
            language: r.get("language"),
            timezone: r.get("timezone"),
            lat: r.get("lat"),
            long: r.get("long"),
            country: r.get("country"),
            external_user_id: r.get("external_user_id"),
            device: Box::new(Device::from_json(r.get("device"))),
        },
        tags,
        linked_children: r.get("linked_children"),
        source_offset: r.get("source_offset"),
    }
}

/// Inserts or updates the row with its new state.
pub async fn save(c: &impl GenericClient, id: Uuid, row: &Row) -> Result<()> {
    let tags = serde_json::to_value(&row.tags).expect("tags always serialize");
    let f = &row.fields;
    execute(
        c,
        include_str!("../../sql/row_save.sql"),
        &[
            &id,
            &row.app_id,
            &row.device_type,
            &row.identifier,
            &f.language,
            &f.timezone,
            &f.lat,
            &f.long,
            &f.country,
            &tags,
            &f.external_user_id,
            &row.linked_children,
            &row.source_offset,
            &f.device.to_json(),
        ],
    )
    .await?;
    Ok(())
}

/// Writes updates of rows themselves in one statement, each provided its row exists in the
/// update's app and has none of its changes yet; returns the rows written, as saved. A row left
/// out was not written (missing, foreign, a replay, or tags over `limit`: for [`lock`] and the
/// plan to tell apart). `updates` must not name a row twice.
pub async fn update_own(
    c: &impl GenericClient,
    updates: &[(Uuid, &OwnUpdate)],
    limit: &TagLimit,
) -> Result<HashMap<Uuid, Row>> {
    let n = updates.len();
    let (mut ids, mut apps) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut language, mut timezone) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut lat, mut long) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut country, mut external) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut set, mut deleted) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut first, mut last) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut device = Vec::with_capacity(n);
    for (id, u) in updates {
        let f = &u.fields;
        ids.push(*id);
        apps.push(u.app_id);
        language.push(f.language.as_deref());
        timezone.push(f.timezone);
        lat.push(f.lat);
        long.push(f.long);
        country.push(f.country.as_deref());
        external.push(f.external_user_id.as_deref());
        device.push(f.device.to_json());
        let (sets, deletes): (Vec<_>, Vec<_>) = u.tags.iter().partition(|(_, v)| v.is_some());
        set.push(serde_json::Value::Object(
            sets.into_iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        ));
        deleted.push(serde_json::Value::from_iter(
            deletes.into_iter().map(|(k, _)| k.clone()),
        ));
        first.push(u.first);
        last.push(u.last);
    }
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let (max_tags, max_bytes) = (count(limit.max_tags), count(limit.max_bytes));
    let rows = query(
        c,
        include_str!("../../sql/rows_update_own.sql"),
        &[
            &ids, &apps, &language, &timezone, &lat, &long, &country, &external, &set, &deleted,
            &first, &last, &max_tags, &max_bytes, &device,
        ],
    )
    .await?;
    Ok(rows.iter().map(|r| (r.get("id"), from_pg(r))).collect())
}

/// Which of `children` are linked to `parent` within `app`.
pub async fn linked(
    c: &impl GenericClient,
    app: Uuid,
    parent: Uuid,
    children: &[Uuid],
) -> Result<HashSet<Uuid>> {
    if children.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = query(
        c,
        include_str!("../../sql/links_of.sql"),
        &[&app, &parent, &children],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn link(
    c: &impl GenericClient,
    app: Uuid,
    parent: Uuid,
    children: &[(Uuid, i64)],
) -> Result<()> {
    if children.is_empty() {
        return Ok(());
    }
    let (ids, offsets): (Vec<Uuid>, Vec<i64>) = children.iter().copied().unzip();
    execute(
        c,
        include_str!("../../sql/links_insert.sql"),
        &[&app, &parent, &ids, &offsets],
    )
    .await?;
    Ok(())
}

pub async fn unlink(
    c: &impl GenericClient,
    app: Uuid,
    parent: Uuid,
    children: &[Uuid],
) -> Result<()> {
    if children.is_empty() {
        return Ok(());
    }
    execute(
        c,
        include_str!("../../sql/links_delete.sql"),
        &[&app, &parent, &children],
    )
    .await?;
    Ok(())
}

/// Which of `ids` exist in `app`.
pub async fn existing(c: &impl GenericClient, app: Uuid, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = query(
        c,
        include_str!("../../sql/players_existing.sql"),
        &[&app, &ids],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Which of `ids` were rows of `app` and have been deleted.
pub async fn deleted(c: &impl GenericClient, app: Uuid, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = query(c, include_str!("../../sql/deleted_of.sql"), &[&app, &ids]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// For each of `ids` that has one, the newest offset at which its update was rejected as unknown.
pub async fn rejected(
    c: &impl GenericClient,
    app: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, i64>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = query(c, include_str!("../../sql/rejected_of.sql"), &[&app, &ids]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn record_rejected(
    c: &impl GenericClient,
    app: Uuid,
    id: Uuid,
    offset: i64,
) -> Result<()> {
    execute(
        c,
        include_str!("../../sql/rejected_record.sql"),
        &[&app, &id, &offset],
    )
    .await?;
    Ok(())
}
