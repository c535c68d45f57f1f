//! The statements the consumer runs for one row (see [`crate::apply`]): an update of the row
//! itself in one statement, and everything else in one transaction.
//!
//! Every statement is prepared once per pooled connection (`prepare_cached`): preparing it on
//! each call would cost a round trip of its own, as many as running it.

use std::collections::{BTreeMap, HashMap, HashSet};

use deadpool_postgres::GenericClient;
use tokio_postgres::Row as PgRow;
use uuid::Uuid;

use crate::apply::plan::{OwnUpdate, Row};
use crate::message::Fields;

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// The row, locked until the transaction ends; `None` when it does not exist.
pub async fn lock(c: &impl GenericClient, id: Uuid) -> Result<Option<Row>> {
    let row = c
        .query_opt(
            &c.prepare_cached(include_str!("../../sql/row_lock.sql"))
                .await?,
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(from_pg))
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
    c.execute(
        &c.prepare_cached(include_str!("../../sql/row_save.sql"))
            .await?,
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
        ],
    )
    .await?;
    Ok(())
}

/// Writes an update of the row itself in one statement, provided the row exists in the
/// update's app and has none of its changes yet; returns the row as saved, or `None` when
/// nothing was written (a missing or foreign row, or a replay, for [`lock`] and the plan to
/// tell apart).
pub async fn update_own(c: &impl GenericClient, id: Uuid, u: &OwnUpdate) -> Result<Option<Row>> {
    let set: serde_json::Map<String, serde_json::Value> = u
        .tags
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.clone()?.into())))
        .collect();
    let set = serde_json::Value::Object(set);
    let deleted: Vec<&str> = u
        .tags
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    let f = &u.fields;
    let row = c
        .query_opt(
            &c.prepare_cached(include_str!("../../sql/row_update_own.sql"))
                .await?,
            &[
                &id,
                &u.app_id,
                &f.language,
                &f.timezone,
                &f.lat,
                &f.long,
                &f.country,
                &f.external_user_id,
                &set,
                &deleted,
                &u.first,
                &u.last,
            ],
        )
        .await?;
    Ok(row.as_ref().map(from_pg))
}

/// Which of `children` are linked to `parent`.
pub async fn linked(
    c: &impl GenericClient,
    parent: Uuid,
    children: &[Uuid],
) -> Result<HashSet<Uuid>> {
    if children.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = c
        .query(
            &c.prepare_cached(include_str!("../../sql/links_of.sql"))
                .await?,
            &[&parent, &children],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn link(c: &impl GenericClient, parent: Uuid, children: &[(Uuid, i64)]) -> Result<()> {
    if children.is_empty() {
        return Ok(());
    }
    let (ids, offsets): (Vec<Uuid>, Vec<i64>) = children.iter().copied().unzip();
    c.execute(
        &c.prepare_cached(include_str!("../../sql/links_insert.sql"))
            .await?,
        &[&parent, &ids, &offsets],
    )
    .await?;
    Ok(())
}

pub async fn unlink(c: &impl GenericClient, parent: Uuid, children: &[Uuid]) -> Result<()> {
    if children.is_empty() {
        return Ok(());
    }
    c.execute(
        &c.prepare_cached(include_str!("../../sql/links_delete.sql"))
            .await?,
        &[&parent, &children],
    )
    .await?;
    Ok(())
}

/// Which of `ids` exist in `app`.
pub async fn existing(c: &impl GenericClient, app: Uuid, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = c
        .query(
            &c.prepare_cached(include_str!("../../sql/players_existing.sql"))
                .await?,
            &[&app, &ids],
        )
        .await?;
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
    let rows = c
        .query(
            &c.prepare_cached(include_str!("../../sql/rejected_of.sql"))
                .await?,
            &[&app, &ids],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn record_rejected(
    c: &impl GenericClient,
    app: Uuid,
    id: Uuid,
    offset: i64,
) -> Result<()> {
    c.execute(
        &c.prepare_cached(include_str!("../../sql/rejected_record.sql"))
            .await?,
        &[&app, &id, &offset],
    )
    .await?;
    Ok(())
}
