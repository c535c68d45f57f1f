use super::*;
use crate::message::{parse_row_key, row_key, test_record, Fields, Message, Update};
use crate::skip::SkipTarget;
use kafkaesque_runtime::RecordData;

fn record(app: Uuid, player: Uuid, email: Option<&str>, offset: i64) -> Record {
    let m = Message::Update(Update {
        player_id: player,
        app_id: app,
        fields: Fields::default(),
        tags: Default::default(),
        email: email.map(str::to_owned),
        parent_player_id: None,
    });
    test_record(&m, offset, None)
}

/// The rows of `keys`, each checked to be of `app`.
fn rows_of(app: Uuid, keys: Vec<Bytes>) -> Vec<Uuid> {
    keys.iter()
        .map(|k| {
            let (of, row) = parse_row_key(k).expect("a row key");
            assert_eq!(of, app, "a row key of the record's app");
            row
        })
        .collect()
}

#[test]
fn a_child_runs_under_its_parents_and_a_new_email_reaches_old_and_new_parent() {
    let r = key_router(
        LinkCache::default(),
        SkipList::default(),
        Busiest::default(),
    );
    let (app, child) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(rows_of(app, r(&record(app, child, None, 0))), vec![child]);

    let a = email_parent_id(app, "A@example.com");
    let linking = record(app, child, Some("a@example.com"), 1);
    assert_eq!(rows_of(app, r(&linking)), vec![child, a]);
    assert_eq!(
        rows_of(app, r(&record(app, child, None, 2))),
        vec![child, a]
    );

    let b = email_parent_id(app, "b@example.com");
    let moving = record(app, child, Some("b@example.com"), 3);
    assert_eq!(rows_of(app, r(&moving)), vec![child, a, b]);
    assert_eq!(
        rows_of(app, r(&record(app, child, None, 4))),
        vec![child, b]
    );
}

#[test]
fn loaded_links_are_added_never_replace_routed_ones() {
    let links = LinkCache::default();
    let r = key_router(links.clone(), SkipList::default(), Busiest::default());
    let (app, child, old) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let new = email_parent_id(app, "x@example.com");
    r(&record(app, child, Some("x@example.com"), 0));
    links.absorb([(app, child, old)]);
    assert_eq!(
        rows_of(app, r(&record(app, child, None, 1))),
        vec![child, new, old]
    );
}

#[test]
fn skipped_rows_and_apps_are_dropped_and_bad_records_queue_apart() {
    let skips = SkipList::default();
    let r = key_router(LinkCache::default(), skips.clone(), Busiest::default());
    let (app, child) = (Uuid::new_v4(), Uuid::new_v4());
    let parent = email_parent_id(app, "p@example.com");
    skips.insert(SkipTarget::Player(parent));
    let linking = record(app, child, Some("p@example.com"), 0);
    assert_eq!(rows_of(app, r(&linking)), vec![child]);
    skips.insert(SkipTarget::App(app));
    assert!(r(&record(app, child, None, 1)).is_empty());

    let mut bad = record(app, child, None, 2);
    bad.set_payload(Some(Bytes::from_static(b"{not json")));
    assert_eq!(r(&bad), vec![Bytes::from_static(MALFORMED_KEY)]);
    let wrong_key = Record::from(RecordData {
        key: Some(Bytes::from(Uuid::new_v4().to_string())),
        ..record(app, child, None, 3).data().clone()
    });
    assert_eq!(r(&wrong_key), vec![Bytes::from_static(MALFORMED_KEY)]);
}

#[test]
fn another_apps_update_naming_a_linked_child_reaches_neither_its_parent_nor_its_links() {
    let r = key_router(
        LinkCache::default(),
        SkipList::default(),
        Busiest::default(),
    );
    let (victim, attacker, child) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let parent = email_parent_id(victim, "p@example.com");
    r(&record(victim, child, Some("p@example.com"), 0));

    // The attacker's keys name its own app: it can never share a queue with the victim's rows.
    let app = attacker;
    assert_eq!(rows_of(app, r(&record(app, child, None, 1))), vec![child]);
    let theirs = email_parent_id(attacker, "p@example.com");
    let moving = record(app, child, Some("p@example.com"), 2);
    assert_eq!(rows_of(app, r(&moving)), vec![child, theirs]);

    // The victim's links are as they were.
    let app = victim;
    assert_eq!(
        rows_of(app, r(&record(app, child, None, 3))),
        vec![child, parent]
    );
}

#[test]
fn row_keys_round_trip_and_refuse_anything_else() {
    let (app, row) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(parse_row_key(&row_key(app, row)), Some((app, row)));
    for bad in [&b"malformed"[..], row.to_string().as_bytes(), b"", b"x:y"] {
        assert_eq!(parse_row_key(bad), None, "{bad:?}");
    }
}

#[test]
fn forgetting_undoes_only_what_the_named_update_taught() {
    let links = LinkCache::default();
    let r = key_router(links.clone(), SkipList::default(), Busiest::default());
    let (app, stranger, child, old) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    r(&record(app, stranger, Some("s@example.com"), 5));
    assert_eq!(links.len(), 1);
    links.forget(app, stranger, 5..=5);
    assert!(links.is_empty(), "the stranger's entry is gone");

    // A later update changed the entry: forgetting the earlier one leaves it.
    r(&record(app, child, Some("a@example.com"), 6));
    r(&record(app, child, Some("b@example.com"), 7));
    links.forget(app, child, 6..=6);
    let b = email_parent_id(app, "b@example.com");
    assert_eq!(
        rows_of(app, r(&record(app, child, None, 8))),
        vec![child, b]
    );
    // A link the database holds is never forgotten.
    links.absorb([(app, child, old)]);
    links.forget(app, child, 7..=7);
    assert_eq!(
        rows_of(app, r(&record(app, child, None, 9))),
        vec![child, b, old]
    );
}

fn deleting(app: Uuid, player: Uuid, offset: i64) -> Record {
    let m = Message::Delete(crate::message::Delete {
        player_id: player,
        app_id: app,
    });
    test_record(&m, offset, None)
}

#[test]
fn a_delete_of_a_child_reaches_its_parents_and_then_the_child_has_none() {
    let links = LinkCache::default();
    let r = key_router(links.clone(), SkipList::default(), Busiest::default());
    let (app, child) = (Uuid::new_v4(), Uuid::new_v4());
    let parent = email_parent_id(app, "p@example.com");
    r(&record(app, child, Some("p@example.com"), 0));
    assert_eq!(
        rows_of(app, r(&deleting(app, child, 1))),
        vec![child, parent]
    );
    assert!(links.is_empty());
    assert_eq!(rows_of(app, r(&record(app, child, None, 2))), vec![child]);
}

#[test]
fn a_deleted_parent_is_forgotten_by_its_children_and_only_by_them() {
    let links = LinkCache::default();
    let r = key_router(links.clone(), SkipList::default(), Busiest::default());
    let (app, other_app) = (Uuid::new_v4(), Uuid::new_v4());
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let parent = email_parent_id(app, "p@example.com");
    let kept = email_parent_id(app, "q@example.com");
    links.absorb([(app, a, parent), (app, b, parent), (app, b, kept)]);
    links.absorb([(other_app, a, parent)]);
    links.unlink_parent(app, parent, &[a, b, c]);
    assert_eq!(rows_of(app, r(&record(app, a, None, 1))), vec![a]);
    assert_eq!(rows_of(app, r(&record(app, b, None, 2))), vec![b, kept]);
    let theirs = r(&record(other_app, a, None, 3));
    assert_eq!(rows_of(other_app, theirs), vec![a, parent]);
}

#[test]
fn a_newer_format_message_runs_under_its_row_alone_or_apart_when_it_names_none() {
    let links = LinkCache::default();
    let r = key_router(links.clone(), SkipList::default(), Busiest::default());
    let (app, child) = (Uuid::new_v4(), Uuid::new_v4());
    let parent = email_parent_id(app, "p@example.com");
    links.absorb([(app, child, parent)]);
    let mut newer = record(app, child, None, 1);
    newer.set_payload(Some(Bytes::from(format!(
        r#"{{"version":99,"op":"update","player_id":"{child}","app_id":"{app}","email":"z@example.com"}}"#
    ))));
    assert_eq!(rows_of(app, r(&newer)), vec![child]);
    let mut unknown_op = newer.clone();
    unknown_op.set_payload(Some(Bytes::from(format!(
        r#"{{"op":"merge","player_id":"{child}","app_id":"{app}"}}"#
    ))));
    assert_eq!(rows_of(app, r(&unknown_op)), vec![child]);
    assert_eq!(
        rows_of(app, r(&record(app, child, None, 2))),
        vec![child, parent],
        "the links are as they were"
    );
    let mut shapeless = newer.clone();
    shapeless.set_payload(Some(Bytes::from_static(br#"{"version":99,"op":"update"}"#)));
    assert_eq!(r(&shapeless), vec![Bytes::from_static(NEWER_KEY)]);
}
