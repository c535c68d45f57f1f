use super::*;
use crate::message::email_parent_id;

const LIMIT: i32 = 2;

pub(super) fn update(
    app: Uuid,
    player: Uuid,
    offset: i64,
    lang: &str,
    email: Option<&str>,
) -> Change {
    crate::apply::changes::update(app, player, offset, lang, &[("k", Some(lang))], email)
}

pub(super) fn known(linked: &[Uuid], existing: &[Uuid]) -> Known {
    Known {
        linked: linked.iter().copied().collect(),
        children: existing.iter().map(|c| (*c, Child::Exists)).collect(),
        link_limit: LIMIT,
        tag_limit: TagLimit::default(),
        deleted: None,
    }
}

pub(super) fn row(app: Uuid, offset: i64, children: i32) -> Row {
    Row {
        linked_children: children,
        ..Row::email_parent(app, "p@example.com", offset)
    }
}

#[test]
fn replayed_changes_are_skipped_and_newer_ones_applied_once() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let mut r = row(app, 10, 0);
    r.device_type = 1;
    let changes = [
        update(app, id, 9, "de", None),
        update(app, id, 11, "fr", None),
    ];
    let p = plan(id, Some(r), &changes, &known(&[], &[])).unwrap();
    assert_eq!(p.replayed, 1);
    let saved = p.save.expect("written");
    assert_eq!(
        (saved.fields.language.as_deref(), saved.source_offset),
        (Some("fr"), 11)
    );
    let again = plan(id, Some(saved), &changes, &known(&[], &[])).unwrap();
    assert_eq!((again.save, again.replayed), (None, 2));
}

#[test]
fn an_update_of_a_missing_row_stops_as_unknown() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let stop = plan(
        id,
        None,
        &[update(app, id, 3, "en", None)],
        &known(&[], &[]),
    );
    assert_eq!(stop, Err(Stop::Unknown { offset: 3 }));
}

#[test]
fn links_create_the_parent_mirror_and_stop_at_the_limit() {
    let app = Uuid::new_v4();
    let parent = email_parent_id(app, "p@example.com");
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let changes = [
        update(app, a, 1, "aa", Some("P@example.com")),
        update(app, b, 2, "bb", Some("p@example.com")),
        update(app, c, 3, "cc", Some("p@example.com")),
        update(app, c, 4, "cx", None),
    ];
    let p = plan(parent, None, &changes, &known(&[], &[a, b, c])).unwrap();
    assert!(p.created);
    assert_eq!(p.refused, vec![(c, 3)]);
    let mut linked = vec![(a, 1), (b, 2)];
    linked.sort_unstable();
    assert_eq!(p.link, linked);
    let saved = p.save.unwrap();
    assert_eq!(saved.device_type, EMAIL_DEVICE_TYPE);
    assert_eq!(saved.identifier.as_deref(), Some("p@example.com"));
    assert_eq!(saved.linked_children, 2);
    // c is not linked: neither its refused request nor its later update reach the parent.
    assert_eq!(saved.fields.language.as_deref(), Some("bb"));
    assert_eq!(saved.source_offset, 4);
}

#[test]
fn a_new_email_unlinks_from_the_old_parent_without_mirroring() {
    let app = Uuid::new_v4();
    let old = email_parent_id(app, "p@example.com");
    let child = Uuid::new_v4();
    let changes = [
        update(app, child, 5, "en", None),
        update(app, child, 6, "xx", Some("other@example.com")),
        update(app, child, 7, "yy", None),
    ];
    let p = plan(old, Some(row(app, 1, 1)), &changes, &known(&[child], &[])).unwrap();
    assert_eq!(p.unlink, vec![child]);
    let saved = p.save.unwrap();
    assert_eq!(
        (saved.linked_children, saved.fields.language.as_deref()),
        (0, Some("en"))
    );
}

#[test]
fn a_child_not_seen_yet_waits_and_one_found_unknown_is_ignored() {
    let app = Uuid::new_v4();
    let parent = email_parent_id(app, "p@example.com");
    let child = Uuid::new_v4();
    let changes = [update(app, child, 8, "en", Some("p@example.com"))];
    let mut k = known(&[], &[]);
    assert_eq!(
        plan(parent, None, &changes, &k),
        Err(Stop::Pending { child })
    );
    k.children.insert(child, Child::Rejected(7));
    assert_eq!(
        plan(parent, None, &changes, &k),
        Err(Stop::Pending { child })
    );
    k.children.insert(child, Child::Rejected(8));
    assert_eq!(plan(parent, None, &changes, &k), Ok(Plan::default()));
}

#[test]
fn a_child_may_leave_and_come_back_within_one_batch() {
    let app = Uuid::new_v4();
    let parent = email_parent_id(app, "p@example.com");
    let child = Uuid::new_v4();
    let changes = [
        update(app, child, 5, "xx", Some("other@example.com")),
        update(app, child, 6, "en", Some("p@example.com")),
    ];
    let p = plan(
        parent,
        Some(row(app, 1, 1)),
        &changes,
        &known(&[child], &[child]),
    )
    .unwrap();
    assert_eq!((p.link, p.unlink), (vec![(child, 6)], vec![]));
    let saved = p.save.unwrap();
    assert_eq!(
        (saved.linked_children, saved.fields.language.as_deref()),
        (1, Some("en"))
    );
}

fn own_changes(app: Uuid, id: Uuid) -> Vec<Change> {
    let mut second = update(app, id, 12, "fr", Some("p@example.com"));
    if let Message::Update(u) = &mut second.message {
        u.fields.timezone = Some(3600);
        u.tags = [
            ("k".to_owned(), None),
            ("plan".to_owned(), Some("vip".to_owned())),
        ]
        .into();
    }
    vec![update(app, id, 11, "de", None), second]
}

#[test]
fn own_updates_fold_into_one_and_save_what_the_plan_would() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let changes = own_changes(app, id);
    let own = own_update(id, &changes).expect("only updates of the row itself");
    assert_eq!((own.first, own.last), (11, 12));
    let mut before = row(app, 10, 1);
    before.tags.insert("old".into(), "x".into());
    // What update_own's statement does to a row below `first`, field by field and tag by tag.
    let mut written = before.clone();
    written.apply(&own.fields, &own.tags);
    written.source_offset = own.last;
    let planned = plan(id, Some(before), &changes, &known(&[], &[])).unwrap();
    assert_eq!(
        planned,
        Plan {
            save: Some(written),
            ..Plan::default()
        }
    );
}

#[test]
fn only_own_updates_in_rising_order_fold() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let mut changes = own_changes(app, id);
    changes.reverse();
    assert_eq!(own_update(id, &changes), None, "offsets not rising");
    let child = update(app, Uuid::new_v4(), 13, "en", None);
    assert_eq!(
        own_update(id, &[own_changes(app, id), vec![child]].concat()),
        None
    );
    assert_eq!(
        own_update(
            id,
            &[vec![create(app, id, 9)], own_changes(app, id)].concat()
        ),
        None
    );
    assert_eq!(own_update(id, &[]), None);
}

// Another app's changes, as an attacker with a valid key of its own sends them: naming a row of
// the victim app, with offsets above the victim row's (another partition, or later in the same
// one). None of them may touch the victim's row, its offset or its links.

use crate::apply::changes::create;

#[test]
fn another_apps_update_of_a_linked_child_is_not_mirrored_onto_the_parent() {
    let (victim, attacker) = (Uuid::new_v4(), Uuid::new_v4());
    let parent = email_parent_id(victim, "p@example.com");
    let child = Uuid::new_v4();
    let changes = [update(attacker, child, 900, "pwned", None)];
    let p = plan(
        parent,
        Some(row(victim, 10, 1)),
        &changes,
        &known(&[child], &[child]),
    )
    .unwrap();
    assert_eq!(p.save, None, "the victim's parent row is not written");
    assert_eq!((p.link, p.unlink), (vec![], vec![]));
    assert_eq!(p.foreign, 1);
}

#[test]
fn another_apps_email_does_not_unlink_a_child_from_its_parent() {
    let (victim, attacker) = (Uuid::new_v4(), Uuid::new_v4());
    let parent = email_parent_id(victim, "p@example.com");
    let child = Uuid::new_v4();
    let changes = [update(attacker, child, 900, "pwned", Some("p@example.com"))];
    let p = plan(
        parent,
        Some(row(victim, 10, 1)),
        &changes,
        &known(&[child], &[child]),
    )
    .unwrap();
    assert_eq!((p.save, p.unlink), (None, vec![]));
    let changes = [update(attacker, child, 901, "pwned", Some("a@example.com"))];
    let p = plan(
        parent,
        Some(row(victim, 10, 1)),
        &changes,
        &known(&[child], &[]),
    )
    .unwrap();
    assert_eq!((p.save, p.unlink), (None, vec![]));
}

#[test]
fn another_apps_update_or_create_of_a_row_stops_as_foreign_and_leaves_it_alone() {
    let (victim, attacker) = (Uuid::new_v4(), Uuid::new_v4());
    let id = Uuid::new_v4();
    let mut r = row(victim, 10, 0);
    r.device_type = 1;
    let attacks = [
        update(attacker, id, 900, "pwned", None),
        create(attacker, id, 901),
    ];
    for change in attacks {
        let offset = change.offset;
        assert_eq!(
            plan(id, Some(r.clone()), &[change], &known(&[], &[])),
            Err(Stop::Foreign { offset })
        );
    }
    // Behind the victim's own change in one delivery, the attack still stops it all: the
    // delivery is dead-lettered, and the victim's change applies on its own when retried alone
    // is not needed — the engine delivers each record's own row separately.
    assert!(own_update(
        id,
        &[
            update(victim, id, 11, "en", None),
            update(attacker, id, 12, "x", None)
        ]
    )
    .is_none());
}

#[test]
fn an_update_over_the_tag_limit_is_refused_whole_and_the_rest_applies() {
    let (app, id, child) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut r = row(app, 1, 0);
    r.device_type = 1;
    r.tags = [("a".to_owned(), "1".to_owned())].into();
    let tags = |pairs: &[(&str, Option<&str>)]| -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    };
    let change = |offset, lang: &str, t| {
        let mut c = update(app, id, offset, lang, None);
        if let Message::Update(u) = &mut c.message {
            u.tags = t;
        }
        c
    };
    let k = Known {
        tag_limit: TagLimit {
            max_tags: 2,
            max_bytes: 100,
        },
        ..known(&[], &[])
    };
    let changes = [
        change(2, "de", tags(&[("b", Some("2")), ("c", Some("3"))])),
        change(3, "fr", tags(&[("a", None), ("b", Some("2"))])),
    ];
    let p = plan(id, Some(r.clone()), &changes, &k).unwrap();
    assert_eq!(p.over_tag_limit.len(), 1);
    assert_eq!(p.over_tag_limit[0].0, 2);
    assert!(p.over_tag_limit[0].1.contains("3 tags, at most 2"));
    let saved = p.save.expect("the rest applied");
    assert_eq!(saved.fields.language.as_deref(), Some("fr"), "not de");
    assert_eq!(saved.tags, [("b".to_owned(), "2".to_owned())].into());
    assert_eq!(saved.source_offset, 3);

    // On a parent, a child's tags over the limit are left out; its fields are mirrored.
    let mut mirrored = update(app, child, 4, "it", None);
    if let Message::Update(u) = &mut mirrored.message {
        u.tags = tags(&[("x", Some("1")), ("y", Some("2")), ("z", Some("3"))]);
    }
    let k = Known {
        linked: [child].into(),
        ..k
    };
    let p = plan(Uuid::new_v4(), Some(row(app, 1, 1)), &[mirrored], &k).unwrap();
    assert_eq!(p.mirrored_tags_refused, vec![(child, 4)]);
    let saved = p.save.expect("fields mirrored");
    assert_eq!(saved.fields.language.as_deref(), Some("it"));
    assert!(saved.tags.is_empty());
}
