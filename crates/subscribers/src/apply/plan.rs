//! What a delivery does to its row, decided in memory from the row, its links and the changes,
//! so that a batch of any length costs one write. No I/O here.
//!
//! The rules, change by change, in offset order:
//! - **Another app's change**: a row is written only by changes of its own app. A change of
//!   another app naming the row itself stops the delivery (`foreign_player`, dead-lettered);
//!   one reaching the row as a child's parent is ignored and counted. Neither moves the row's
//!   offset, which is comparable only with offsets of its own app's partition.
//! - **Replay**: a change at or below the row's `source_offset` was applied before: skipped.
//! - **Create** of the row: inserts it unless it exists — unless its tags are over the tag limit,
//!   which refuses it (`tag_limit`) as it refuses an update.
//! - **Update of the row itself**: fields last-writer-wins, tags set or deleted; `email` plays no
//!   part here (the link lives with the parent). A row that does not exist in the app stops the
//!   delivery: it goes to the dead letters as `unknown_player`. An update that sets tags and
//!   would leave the row holding more than the tag limit is refused whole (neither its fields nor
//!   its tags): the rest of the delivery applies, and the handler dead-letters it as `tag_limit`.
//! - **Delete of the row**: removes it (the handler leaves its tombstone at the delete's offset,
//!   and drops its links as a parent: its children are unlinked). A row that does not exist in
//!   the app stops the delivery as an update does (`unknown_player`).
//! - **A deleted row** (one with a tombstone, deleted before or earlier in the delivery) comes
//!   back for nothing: the replay rule goes on from the delete's offset, a later create or update
//!   of it is refused (the rest of the delivery applies, and the handler dead-letters it as
//!   `deleted_player`), a later delete changes nothing, and a child asking to be linked to it is
//!   refused (counted and logged; the child's own update applies on its own row).
//! - **Delete of a child, on its parent's row**: unlinks the child if it was linked.
//! - **Update of a child, on its parent's row** (the router sends it here because the child is,
//!   or is about to be, linked): with an `email` naming this row it is a link request — granted
//!   while the parent has fewer than the link limit's children (creating the email subscription
//!   on the first link), refused otherwise; a `parent_player_id` naming this row is the same
//!   request, granted only where this row is an existing email subscription (its address is not
//!   in the request to create it with; otherwise it is left out, counted and logged); an `email`
//!   or `parent_player_id` naming another row unlinks the child from this one; then, if the child is linked, its fields and tags are mirrored here.
//!   A child that is not linked changes nothing: routing to a parent is a harmless guess. A
//!   mirrored change whose tags would take the parent over the tag limit (children's tags add
//!   up there) mirrors its fields only; its tags are left out, counted and logged.

use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use crate::config::TagLimit;
use crate::message::{Change, Fields, Message, NewPlayer, Update, EMAIL_DEVICE_TYPE};
pub use crate::store::rows::{OwnUpdate, Row, Tombstone};

impl Row {
    fn created(p: &NewPlayer, offset: i64) -> Self {
        Row {
            app_id: p.app_id,
            device_type: p.device_type,
            identifier: p.identifier.clone(),
            fields: p.fields.clone(),
            tags: p.tags.clone(),
            linked_children: 0,
            source_offset: offset,
        }
    }

    fn email_parent(app_id: Uuid, email: &str, offset: i64) -> Self {
        Row {
            app_id,
            device_type: EMAIL_DEVICE_TYPE,
            identifier: Some(email.trim().to_lowercase()),
            fields: Fields::default(),
            tags: BTreeMap::new(),
            linked_children: 0,
            source_offset: offset,
        }
    }

    fn is_email(&self) -> bool {
        self.device_type == EMAIL_DEVICE_TYPE
    }

    fn apply(&mut self, fields: &Fields, tags: &BTreeMap<String, Option<String>>) {
        self.fields.overwrite_with(fields.clone());
        self.tags = merged(&self.tags, tags);
    }

    /// What taking `tags` would exceed of `limit`; `None` when the row's tags would stay within
    /// it, or when they set nothing (deleting never takes a row over, even one already over a
    /// limit lowered since).
    fn tags_exceed(
        &self,
        tags: &BTreeMap<String, Option<String>>,
        limit: &TagLimit,
    ) -> Option<String> {
        if tags.values().all(Option::is_none) {
            return None;
        }
        let after = merged(&self.tags, tags);
        limit.exceeded(after.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// `tags` with `changes` set or deleted.
fn merged(
    tags: &BTreeMap<String, String>,
    changes: &BTreeMap<String, Option<String>>,
) -> BTreeMap<String, String> {
    let mut after = tags.clone();
    for (k, v) in changes {
        match v {
            Some(v) => after.insert(k.clone(), v.clone()),
            None => after.remove(k),
        };
    }
    after
}

/// What the database said about a child that asks to be linked and is not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Exists,
    /// Not in the app; its own queue dead-lettered an update of it at this offset.
    Rejected(i64),
    /// Not in the app, and no verdict from its own queue yet.
    Unseen,
    /// Deleted: its link requests, before or after the delete, are ignored (a request before it
    /// would be undone by the delete, which reaches this parent later).
    Deleted,
}

/// What a delivery found in the database besides its row.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Children (of those in the batch) linked to this row.
    pub linked: HashSet<Uuid>,
    /// Children asking to be linked, as far as the database knows them.
    pub children: HashMap<Uuid, Child>,
    pub link_limit: i32,
    pub tag_limit: TagLimit,
    /// The row's tombstone, when it does not exist because it was deleted.
    pub deleted: Option<Tombstone>,
}

/// The outcome: the row's new state and the link changes, to be written in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The row to save, if anything changed (its offset included).
    pub save: Option<Row>,
    /// The row did not exist before.
    pub created: bool,
    pub link: Vec<(Uuid, i64)>,
    pub unlink: Vec<Uuid>,
    /// Link requests over the limit: (child, offset).
    pub refused: Vec<(Uuid, i64)>,
    /// Changes skipped because the row had them already.
    pub replayed: usize,
    /// Mirrored changes of another app's child, ignored.
    pub foreign: usize,
    /// Updates of the row itself refused for the tag limit: (offset, what they would exceed).
    pub over_tag_limit: Vec<(i64, String)>,
    /// Mirrored changes whose tags were left out for the tag limit: (child, offset).
    pub mirrored_tags_refused: Vec<(Uuid, i64)>,
    /// Link requests by `parent_player_id` naming this row, which is no email subscription of
    /// the app (or none at all): (child, offset). Nothing of them is applied here.
    pub not_email_parent: Vec<(Uuid, i64)>,
    /// The row is deleted at this offset: the handler removes it and leaves its tombstone (and
    /// `save`, `link` and `unlink` are empty: the row's links go with it).
    pub delete: Option<i64>,
    /// Creates and updates of the row refused because it was deleted before them: offsets.
    pub after_delete: Vec<i64>,
    /// Link requests refused because this row, their parent, was deleted: (child, offset).
    pub links_to_deleted: Vec<(Uuid, i64)>,
}

/// Why a delivery cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// An update of the row, which does not exist in the app.
    Unknown { offset: i64 },
    /// A create or update of the row by another app than the row's.
    Foreign { offset: i64 },
    /// A child asks to be linked but its own queue has not yet created it (or found it unknown).
    Pending { child: Uuid },
}

/// The delivery as one [`OwnUpdate`], when that is exactly what [`plan`] would do to a row that
/// exists in the app and is below its first offset: every change an update of `id` itself
/// (`email` plays no part there), in rising offset order. `None` for anything else — creates,
/// a parent's mirrored or link changes — which only a plan can decide.
pub fn own_update(id: Uuid, changes: &[Change]) -> Option<OwnUpdate> {
    let mut own: Option<OwnUpdate> = None;
    for change in changes {
        let Message::Update(u) = &change.message else {
            return None;
        };
        if u.player_id != id {
            return None;
        }
        match own.as_mut() {
            None => {
                own = Some(OwnUpdate {
                    app_id: u.app_id,
                    fields: u.fields.clone(),
                    tags: u.tags.clone(),
                    first: change.offset,
                    last: change.offset,
                })
            }
            Some(o) if o.app_id == u.app_id && o.last < change.offset => {
                o.fields.overwrite_with(u.fields.clone());
                o.tags.extend(u.tags.clone());
                o.last = change.offset;
            }
            Some(_) => return None,
        }
    }
    own
}

pub fn plan(
    id: Uuid,
    mut row: Option<Row>,
    changes: &[Change],
    known: &Known,
) -> Result<Plan, Stop> {
    let existed = row.is_some();
    let first_offset = row.as_ref().map(|r| r.source_offset);
    let mut gone = if existed { None } else { known.deleted };
    let mut links = Links {
        linked: known.linked.clone(),
        at: HashMap::new(),
    };
    let mut plan = Plan::default();
    let mut touched = false;
    for change in changes {
        let offset = change.offset;
        let (owner, applied) = match (&row, &gone) {
            (Some(r), _) => (Some(r.app_id), Some(r.source_offset)),
            (None, Some(g)) => (Some(g.app_id), Some(g.source_offset)),
            (None, None) => (None, None),
        };
        if owner.is_some_and(|app| app != change.message.app_id()) {
            if change.message.player_id() == id {
                return Err(Stop::Foreign { offset });
            }
            plan.foreign += 1;
            continue;
        }
        if applied.is_some_and(|applied| offset <= applied) {
            plan.replayed += 1;
            continue;
        }
        if gone.is_some() {
            after_delete(id, change, &mut plan);
            continue;
        }
        match &change.message {
            Message::Create(p) if p.player_id == id && row.is_none() => {
                let tags = p.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                match known.tag_limit.exceeded(tags) {
                    None => row = Some(Row::created(p, offset)),
                    Some(over) => plan.over_tag_limit.push((offset, over)),
                }
            }
            Message::Create(_) => {}
            Message::Update(u) if u.player_id == id => match row.as_mut() {
                Some(r) => match r.tags_exceed(&u.tags, &known.tag_limit) {
                    None => r.apply(&u.fields, &u.tags),
                    Some(over) => plan.over_tag_limit.push((offset, over)),
                },
                None => return Err(Stop::Unknown { offset }),
            },
            Message::Update(u) => {
                if !child_on_parent(id, &mut row, u, offset, known, &mut links, &mut plan)? {
                    continue;
                }
            }
            Message::Delete(d) if d.player_id == id => match row.take() {
                Some(r) => {
                    gone = Some(Tombstone {
                        app_id: r.app_id,
                        source_offset: offset,
                    });
                    plan.delete = Some(offset);
                    continue;
                }
                None => return Err(Stop::Unknown { offset }),
            },
            Message::Delete(d) => {
                if links.linked.remove(&d.player_id) {
                    row.as_mut().expect("a linked row exists").linked_children -= 1;
                }
            }
        }
        if let Some(r) = row.as_mut() {
            r.source_offset = offset;
            touched = true;
        }
    }
    if plan.delete.is_some() {
        return Ok(plan);
    }
    plan.created = !existed && row.is_some();
    if touched && row.as_ref().map(|r| r.source_offset) != first_offset {
        plan.save = row;
    }
    plan.link = links
        .at
        .into_iter()
        .filter(|(c, _)| links.linked.contains(c))
        .collect();
    plan.link.sort_unstable();
    plan.unlink = known.linked.difference(&links.linked).copied().collect();
    plan.unlink.sort_unstable();
    Ok(plan)
}

/// A change of the app's own, newer than the delete of row `id`: a create or update of the row
/// is refused, a repeated delete changes nothing, and a child asking to be linked here is refused.
/// A child's other changes find no link: the delete took them all.
fn after_delete(id: Uuid, change: &Change, plan: &mut Plan) {
    match &change.message {
        Message::Create(_) | Message::Update(_) if change.message.player_id() == id => {
            plan.after_delete.push(change.offset);
        }
        Message::Update(u) => {
            if u.link_target() == Some(id) {
                plan.links_to_deleted.push((u.player_id, change.offset));
            }
        }
        Message::Create(_) | Message::Delete(_) => {}
    }
}

/// The parent's children as the delivery goes: those linked, and the offset each link made in
/// this delivery was asked at.
struct Links {
    linked: HashSet<Uuid>,
    at: HashMap<Uuid, i64>,
}

/// A child's update on its email parent's row `id`: first the link it asks for (an `email`
/// naming this row) or drops (one naming another), then, while linked, its fields and tags
/// mirrored here. `Ok(false)` leaves the change out, row offset and all: the child was refused
/// at or after it, so the link it asks for is not to be made.
fn child_on_parent(
    id: Uuid,
    row: &mut Option<Row>,
    u: &Update,
    offset: i64,
    known: &Known,
    links: &mut Links,
    plan: &mut Plan,
) -> Result<bool, Stop> {
    let child = u.player_id;
    if let Some(target) = u.link_target() {
        if target != id {
            if links.linked.remove(&child) {
                row.as_mut().expect("a linked row exists").linked_children -= 1;
            }
        } else if u.email.is_none() && !row.as_ref().is_some_and(Row::is_email) {
            // Named by id (`parent_player_id`), the parent must be an email subscription that
            // exists: its address, which a parent made here would need, is not in the request.
            plan.not_email_parent.push((child, offset));
            return Ok(false);
        } else if !links.linked.contains(&child) {
            match known.children.get(&child) {
                Some(Child::Exists) => {}
                // Linked before this delivery: it exists.
                None if known.linked.contains(&child) => {}
                Some(Child::Rejected(at)) if *at >= offset => return Ok(false),
                Some(Child::Deleted) => return Ok(false),
                _ => return Err(Stop::Pending { child }),
            }
            let count = row.as_ref().map_or(0, |r| r.linked_children);
            if count >= known.link_limit {
                plan.refused.push((child, offset));
            } else {
                let email = u.email.as_deref().unwrap_or_default();
                let r = row.get_or_insert_with(|| Row::email_parent(u.app_id, email, offset));
                r.linked_children += 1;
                links.linked.insert(child);
                links.at.insert(child, offset);
            }
        }
    }
    if links.linked.contains(&child) {
        let r = row.as_mut().expect("a linked row exists");
        if r.tags_exceed(&u.tags, &known.tag_limit).is_some() {
            plan.mirrored_tags_refused.push((child, offset));
            r.apply(&u.fields, &BTreeMap::new());
        } else {
            r.apply(&u.fields, &u.tags);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod delete_tests;
#[cfg(test)]
mod link_tests;
#[cfg(test)]
mod tests;
