//! Coalescing around deletes and messages of a newer format: nothing after either folds into
//! what came before it, and a coalesced delivery plans as its records would one by one.

use kafkaesque_runtime::RecordData;
use proptest::prelude::*;

use super::*;
use crate::apply::plan::{plan, Known, Plan, Row, Stop, Tombstone};
use crate::message::{row_key, test_record, Delete, Fields, NewPlayer, Update};

fn update(app: Uuid, id: Uuid, language: &str, tag: (&str, Option<&str>)) -> Message {
    Message::Update(Update {
        player_id: id,
        app_id: app,
        fields: Fields {
            language: Some(language.to_owned()),
            ..Fields::default()
        },
        tags: [(tag.0.to_owned(), tag.1.map(str::to_owned))].into(),
        email: None,
        parent_player_id: None,
    })
}

fn create(app: Uuid, id: Uuid) -> Message {
    Message::Create(NewPlayer {
        player_id: id,
        app_id: app,
        device_type: 1,
        identifier: None,
        fields: Fields::default(),
        tags: Default::default(),
    })
}

fn delete(app: Uuid, id: Uuid) -> Message {
    Message::Delete(Delete {
        player_id: id,
        app_id: app,
    })
}

/// `messages` at offsets 1, 2, … coalesced into one delivery of row `id`.
fn coalesced(app: Uuid, id: Uuid, messages: &[Message]) -> Record {
    let key = row_key(app, id);
    let mut older = test_record(&messages[0], 1, Some(id));
    for (m, offset) in messages[1..].iter().zip(2..) {
        merge(&key, &mut older, test_record(m, offset, Some(id)));
    }
    older
}

fn entries(r: &Record) -> Vec<Entry> {
    assert!(is_batch(r));
    Batch::parse(r.payload().unwrap()).unwrap()
}

fn changes(r: &Record) -> Vec<Change> {
    entries(r)
        .into_iter()
        .map(|e| match e {
            Entry::Change(c) => c,
            Entry::Newer { .. } => panic!("a change"),
        })
        .collect()
}

#[test]
fn a_delete_folds_with_nothing_and_nothing_after_it_folds_into_what_came_before() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let messages = [
        update(app, id, "a", ("k", Some("1"))),
        update(app, id, "b", ("k", Some("2"))),
        delete(app, id),
        update(app, id, "c", ("k", Some("3"))),
        update(app, id, "d", ("k", None)),
    ];
    let all = changes(&coalesced(app, id, &messages));
    let offsets: Vec<i64> = all.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, vec![2, 3, 5]);
    assert_eq!(all[1].message, delete(app, id));
}

#[test]
fn a_newer_format_record_keeps_a_line_of_its_own_and_nothing_folds_across_it() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let key = row_key(app, id);
    let mut older = test_record(&update(app, id, "a", ("k", Some("1"))), 1, Some(id));
    let mut newer = Record::from(RecordData {
        offset: 2,
        ..older.data().clone()
    })
    .with_route(Some(key.clone()));
    newer.set_payload(Some(Bytes::from(format!(
        r#"{{"version":99,"op":"update","player_id":"{id}","app_id":"{app}"}}"#
    ))));
    merge(&key, &mut older, newer);
    for offset in [3, 4] {
        let m = update(app, id, "b", ("k", Some("2")));
        merge(&key, &mut older, test_record(&m, offset, Some(id)));
    }
    let lines = entries(&older);
    let offsets: Vec<i64> = lines.iter().map(Entry::offset).collect();
    assert_eq!(offsets, vec![1, 2, 4]);
    assert!(matches!(&lines[1], Entry::Newer { newer, .. } if newer.version == 99));
}

/// What a row ends as: the row, its tombstone, and whether a change after its delete was refused.
type Outcome = (Option<Row>, Option<Tombstone>, bool);

fn known(deleted: Option<Tombstone>) -> Known {
    Known {
        deleted,
        link_limit: 10,
        ..Known::default()
    }
}

/// What `p` leaves of a row of `app` that was `row` (or `gone`) before it.
fn outcome(app: Uuid, row: Option<Row>, gone: Option<Tombstone>, p: Plan) -> Outcome {
    let refused = !p.after_delete.is_empty();
    match p.delete {
        Some(offset) => {
            let gone = Tombstone {
                app_id: app,
                source_offset: offset,
            };
            (None, Some(gone), refused)
        }
        None => (p.save.or(row), gone, refused),
    }
}

/// The messages one at a time, each planned against what the one before left.
fn one_by_one(app: Uuid, id: Uuid, messages: &[Message]) -> Result<Outcome, Stop> {
    let (mut row, mut gone, mut refused) = (None, None, false);
    for (m, offset) in messages.iter().zip(1..) {
        let change = Change {
            offset,
            message: m.clone(),
        };
        let p = plan(id, row.clone(), &[change], &known(gone))?;
        let (r, g, f) = outcome(app, row, gone, p);
        (row, gone, refused) = (r, g, refused || f);
    }
    Ok((row, gone, refused))
}

fn message(app: Uuid, id: Uuid) -> impl Strategy<Value = Message> {
    prop_oneof![
        6 => ("[a-c]", "[xy]", proptest::option::of("[0-9]")).prop_map(move |(l, k, v)| {
            update(app, id, &l, (&k, v.as_deref()))
        }),
        1 => Just(delete(app, id)),
        1 => Just(create(app, id)),
    ]
}

proptest! {
    #[test]
    fn a_coalesced_delivery_with_deletes_plans_as_its_records_one_by_one(
        rest in proptest::collection::vec(message(Uuid::nil(), Uuid::from_u128(7)), 1..12)
    ) {
        let (app, id) = (Uuid::nil(), Uuid::from_u128(7));
        let mut messages = vec![create(app, id)];
        messages.extend(rest);
        let whole = plan(id, None, &changes(&coalesced(app, id, &messages)), &known(None))
            .map(|p| outcome(app, None, None, p));
        prop_assert_eq!(whole, one_by_one(app, id, &messages));
    }
}
