//! The plan's rules for deletes: the row goes, and nothing later brings it back.

use super::*;
use crate::apply::changes::{create, delete, update};
use crate::message::email_parent_id;

fn lang(app: Uuid, player: Uuid, offset: i64, email: Option<&str>) -> Change {
    update(app, player, offset, "en", &[("k", Some("v"))], email)
}

fn known(linked: &[Uuid], existing: &[Uuid], deleted: Option<Tombstone>) -> Known {
    Known {
        linked: linked.iter().copied().collect(),
        children: existing.iter().map(|c| (*c, Child::Exists)).collect(),
        link_limit: 10,
        tag_limit: TagLimit::default(),
        deleted,
    }
}

fn device(app: Uuid, offset: i64) -> Row {
    Row {
        device_type: 1,
        identifier: None,
        ..Row::email_parent(app, "d@example.com", offset)
    }
}

fn parent(app: Uuid, offset: i64, children: i32) -> Row {
    Row {
        linked_children: children,
        ..Row::email_parent(app, "p@example.com", offset)
    }
}

fn tombstone(app: Uuid, offset: i64) -> Option<Tombstone> {
    Some(Tombstone {
        app_id: app,
        source_offset: offset,
    })
}

#[test]
fn a_delete_removes_the_row_and_a_later_update_or_create_of_it_is_refused() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let changes = [
        lang(app, id, 5, None),
        delete(app, id, 6),
        lang(app, id, 7, None),
        create(app, id, 8),
    ];
    let p = plan(id, Some(device(app, 1)), &changes, &known(&[], &[], None)).unwrap();
    assert_eq!(p.delete, Some(6));
    assert_eq!(p.after_delete, vec![7, 8]);
    assert_eq!((p.save, p.created), (None, false));
}

#[test]
fn a_create_and_its_delete_in_one_delivery_leave_only_the_tombstone() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let changes = [create(app, id, 3), delete(app, id, 4)];
    let p = plan(id, None, &changes, &known(&[], &[], None)).unwrap();
    assert_eq!((p.delete, p.save, p.created), (Some(4), None, false));
}

#[test]
fn a_replayed_create_or_update_below_the_tombstone_is_skipped_and_a_newer_one_refused() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let gone = known(&[], &[], tombstone(app, 10));
    let replayed = [
        create(app, id, 3),
        lang(app, id, 9, None),
        delete(app, id, 10),
    ];
    let p = plan(id, None, &replayed, &gone).unwrap();
    assert_eq!(
        p,
        Plan {
            replayed: 3,
            ..Plan::default()
        }
    );
    let p = plan(id, None, &[lang(app, id, 11, None)], &gone).unwrap();
    assert_eq!((p.after_delete, p.save, p.delete), (vec![11], None, None));
}

#[test]
fn a_replayed_delivery_with_a_delete_deletes_once_and_refuses_what_came_after_again() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let changes = [
        lang(app, id, 5, None),
        delete(app, id, 6),
        lang(app, id, 7, None),
    ];
    let first = plan(id, Some(device(app, 1)), &changes, &known(&[], &[], None)).unwrap();
    assert_eq!(
        (first.delete, first.after_delete.clone()),
        (Some(6), vec![7])
    );
    // After the crash: the row is gone, its tombstone at the delete's offset.
    let again = plan(id, None, &changes, &known(&[], &[], tombstone(app, 6))).unwrap();
    assert_eq!((again.delete, again.replayed), (None, 2));
    assert_eq!(again.after_delete, vec![7]);
}

#[test]
fn a_repeated_delete_changes_nothing() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let p = plan(
        id,
        None,
        &[delete(app, id, 12)],
        &known(&[], &[], tombstone(app, 10)),
    );
    assert_eq!(p, Ok(Plan::default()));
}

#[test]
fn a_delete_of_a_row_that_never_existed_stops_as_unknown() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let p = plan(id, None, &[delete(app, id, 4)], &known(&[], &[], None));
    assert_eq!(p, Err(Stop::Unknown { offset: 4 }));
}

#[test]
fn another_apps_delete_or_update_of_a_row_or_its_tombstone_stops_as_foreign() {
    let (app, other, id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let p = plan(
        id,
        Some(device(app, 1)),
        &[delete(other, id, 4)],
        &known(&[], &[], None),
    );
    assert_eq!(p, Err(Stop::Foreign { offset: 4 }));
    let p = plan(
        id,
        None,
        &[lang(other, id, 5, None)],
        &known(&[], &[], tombstone(app, 2)),
    );
    assert_eq!(p, Err(Stop::Foreign { offset: 5 }));
}

#[test]
fn deleting_a_parent_drops_its_links_and_refuses_later_link_requests() {
    let app = Uuid::new_v4();
    let id = email_parent_id(app, "p@example.com");
    let (linked, asking) = (Uuid::new_v4(), Uuid::new_v4());
    let changes = [
        lang(app, linked, 5, None),
        delete(app, id, 6),
        lang(app, linked, 7, None),
        lang(app, asking, 8, Some("p@example.com")),
    ];
    let k = known(&[linked], &[asking], None);
    let p = plan(id, Some(parent(app, 1, 1)), &changes, &k).unwrap();
    assert_eq!(p.delete, Some(6));
    assert_eq!((p.link, p.unlink, p.save), (vec![], vec![], None));
    assert_eq!(p.links_to_deleted, vec![(asking, 8)]);
    assert!(
        p.after_delete.is_empty(),
        "a child's own updates are not refused"
    );
}

#[test]
fn a_deleted_child_is_unlinked_from_its_parent_and_its_later_changes_are_not_mirrored() {
    let app = Uuid::new_v4();
    let id = email_parent_id(app, "p@example.com");
    let child = Uuid::new_v4();
    let changes = [
        lang(app, child, 5, None),
        delete(app, child, 6),
        update(app, child, 7, "xx", &[], None),
    ];
    let p = plan(
        id,
        Some(parent(app, 1, 1)),
        &changes,
        &known(&[child], &[], None),
    )
    .unwrap();
    assert_eq!(p.unlink, vec![child]);
    let saved = p.save.expect("written");
    assert_eq!(saved.linked_children, 0);
    assert_eq!(saved.fields.language.as_deref(), Some("en"));
    assert_eq!(saved.source_offset, 7);
}

#[test]
fn a_link_request_of_a_child_deleted_since_is_ignored_rather_than_waited_for() {
    let app = Uuid::new_v4();
    let id = email_parent_id(app, "p@example.com");
    let child = Uuid::new_v4();
    let changes = [
        lang(app, child, 2, Some("p@example.com")),
        delete(app, child, 3),
    ];
    let mut k = known(&[], &[], None);
    k.children.insert(child, Child::Deleted);
    let p = plan(id, None, &changes, &k).unwrap();
    assert_eq!((p.link, p.save, p.created), (vec![], None, false));
}
