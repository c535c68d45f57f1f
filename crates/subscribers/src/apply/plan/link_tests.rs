//! The plan's rules for OneSignal's ways: links by `parent_player_id`, and the device fields.

use super::tests::{known, row, update};
use super::*;
use crate::apply::changes;
use crate::message::email_parent_id;

/// An update of `child` in `app` asking, by id, to be linked to `parent`, setting tag `k`.
fn by_id(app: Uuid, child: Uuid, offset: i64, parent: Uuid) -> Change {
    let mut change = update(app, child, offset, "xx", None);
    if let Message::Update(u) = &mut change.message {
        u.parent_player_id = Some(parent);
    }
    change
}

#[test]
fn a_link_by_parent_player_id_is_granted_by_an_existing_email_subscription_within_the_limit() {
    let app = Uuid::new_v4();
    let parent = email_parent_id(app, "p@example.com");
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let asks = [
        by_id(app, a, 1, parent),
        by_id(app, b, 2, parent),
        by_id(app, c, 3, parent),
    ];
    let p = plan(parent, Some(row(app, 0, 0)), &asks, &known(&[], &[a, b, c])).unwrap();
    let mut linked = vec![(a, 1), (b, 2)];
    linked.sort_unstable();
    assert_eq!((p.link, p.refused), (linked, vec![(c, 3)]));
    let saved = p.save.expect("mirrored");
    assert_eq!(
        (saved.linked_children, saved.fields.language.as_deref()),
        (2, Some("xx"))
    );
    assert_eq!(saved.tags.get("k").map(String::as_str), Some("xx"));
}

#[test]
fn a_link_by_parent_player_id_to_a_missing_row_or_a_push_subscription_changes_nothing() {
    let app = Uuid::new_v4();
    let target = Uuid::new_v4();
    let child = Uuid::new_v4();
    let ask = [by_id(app, child, 5, target)];
    let p = plan(target, None, &ask, &known(&[], &[child])).unwrap();
    assert_eq!(p.not_email_parent, vec![(child, 5)]);
    assert!(p.save.is_none() && p.link.is_empty() && !p.created, "{p:?}");
    let mut push = row(app, 1, 0);
    push.device_type = 1;
    let p = plan(target, Some(push), &ask, &known(&[], &[child])).unwrap();
    assert_eq!(p.not_email_parent, vec![(child, 5)]);
    assert!(p.save.is_none() && p.link.is_empty(), "{p:?}");
}

#[test]
fn parent_player_id_naming_another_row_unlinks_the_child_from_this_one() {
    let app = Uuid::new_v4();
    let parent = email_parent_id(app, "p@example.com");
    let child = Uuid::new_v4();
    let elsewhere = [by_id(app, child, 7, Uuid::new_v4())];
    let p = plan(
        parent,
        Some(row(app, 1, 1)),
        &elsewhere,
        &known(&[child], &[]),
    )
    .unwrap();
    assert_eq!(p.unlink, vec![child]);
    let saved = p.save.expect("the count goes down");
    assert_eq!(saved.linked_children, 0);
    assert_eq!(
        saved.fields.language, None,
        "an unlinked child is not mirrored"
    );
}

#[test]
fn device_fields_are_created_and_overwritten_field_by_field() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let device = |session_count, sdk: Option<&str>| Fields {
        device: Box::new(crate::message::Device {
            session_count: Some(session_count),
            sdk: sdk.map(str::to_owned),
            ..Default::default()
        }),
        ..Fields::default()
    };
    let mut create = changes::create(app, id, 1);
    if let Message::Create(c) = &mut create.message {
        c.fields = device(1, Some("ios-3"));
    }
    let later = changes::with_fields(app, id, 2, device(2, None), &[], None);
    let p = plan(id, None, &[create, later], &known(&[], &[])).unwrap();
    let saved = p.save.expect("created");
    assert_eq!(
        (
            saved.fields.device.session_count,
            saved.fields.device.sdk.as_deref()
        ),
        (Some(2), Some("ios-3"))
    );
}
