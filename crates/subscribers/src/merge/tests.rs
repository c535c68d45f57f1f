use super::*;
use crate::message::{email_parent_id, row_key, test_record, Fields, Update};
use kafkaesque_runtime::RecordData;

fn record(
    app: Uuid,
    player: Uuid,
    offset: i64,
    tags: &[(&str, Option<&str>)],
    email: Option<&str>,
) -> Record {
    let m = Message::Update(Update {
        player_id: player,
        app_id: app,
        fields: Fields {
            timezone: Some(offset as i32),
            ..Fields::default()
        },
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect(),
        email: email.map(str::to_owned),
        parent_player_id: None,
    });
    test_record(&m, offset, Some(player))
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

fn entries(r: &Record) -> Vec<Entry> {
    assert!(is_batch(r));
    Batch::parse(r.payload().unwrap()).unwrap()
}

#[test]
fn updates_of_the_row_itself_fold_into_one_last_writer_wins_with_deletions_kept() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let key = row_key(app, id);
    let mut older = record(app, id, 1, &[("a", Some("1")), ("b", Some("1"))], None);
    let w = merge(&key, &mut older, record(app, id, 2, &[("a", None)], None));
    merge(
        &key,
        &mut older,
        record(app, id, 3, &[("c", Some("3"))], None),
    );
    assert!(w > 0);
    assert_eq!((older.offset(), older.coalesced()), (3, 3));
    let all = changes(&older);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].offset, 3);
    let Message::Update(u) = &all[0].message else {
        panic!("an update")
    };
    assert_eq!(u.fields.timezone, Some(3));
    let expected = [("a", None), ("b", Some("1")), ("c", Some("3"))];
    let expected = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
        .collect();
    assert_eq!(u.tags, expected);
}

#[test]
fn on_a_parent_children_stay_apart_and_a_new_link_request_does_not_fold() {
    let app = Uuid::new_v4();
    let parent = email_parent_id(app, "p@example.com");
    let key = row_key(app, parent);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut older = record(app, a, 1, &[], Some("p@example.com"));
    merge(&key, &mut older, record(app, a, 2, &[], None));
    merge(&key, &mut older, record(app, b, 3, &[], None));
    merge(
        &key,
        &mut older,
        record(app, b, 4, &[], Some("q@example.com")),
    );
    let offsets: Vec<i64> = changes(&older).iter().map(|c| c.offset).collect();
    assert_eq!(offsets, vec![2, 3, 4]);
    let Message::Update(first) = &changes(&older)[0].message else {
        panic!("an update")
    };
    assert_eq!(
        first.email.as_deref(),
        Some("p@example.com"),
        "the link request survives"
    );
}

#[test]
fn records_that_are_not_messages_are_kept_line_by_line() {
    let app = Uuid::new_v4();
    let mut older = record(app, Uuid::new_v4(), 1, &[], None);
    older.set_payload(Some(Bytes::from_static(b"not\njson")));
    let newer = Record::from(RecordData {
        offset: 2,
        ..older.data().clone()
    });
    merge(b"malformed", &mut older, newer);
    assert_eq!(older.payload(), Some(&b"not json\nnot json"[..]));
}

#[test]
fn device_fields_fold_last_writer_wins_field_by_field() {
    let (app, id) = (Uuid::new_v4(), Uuid::new_v4());
    let key = row_key(app, id);
    let with_device = |offset: i64, device: crate::message::Device| {
        let mut r = record(app, id, offset, &[], None);
        let mut m: Message = serde_json::from_slice(r.payload().unwrap()).unwrap();
        if let Message::Update(u) = &mut m {
            *u.fields.device = device;
        }
        r.set_payload(Some(m.to_bytes()));
        r
    };
    let first = crate::message::Device {
        session_count: Some(1),
        sdk: Some("ios-3".into()),
        ..Default::default()
    };
    let second = crate::message::Device {
        session_count: Some(2),
        amount_spent: Some(1.5),
        ..Default::default()
    };
    let mut older = with_device(1, first);
    merge(&key, &mut older, with_device(2, second));
    let all = changes(&older);
    assert_eq!(all.len(), 1);
    let Message::Update(u) = &all[0].message else {
        panic!("an update")
    };
    let d = &u.fields.device;
    assert_eq!(
        (d.session_count, d.sdk.as_deref(), d.amount_spent),
        (Some(2), Some("ios-3"), Some(1.5))
    );
}

#[test]
fn on_a_parent_a_link_request_by_id_folds_only_into_the_same_request() {
    let app = Uuid::new_v4();
    let parent = Uuid::new_v4();
    let key = row_key(app, parent);
    let child = Uuid::new_v4();
    let asking = |offset: i64, to: Option<Uuid>| {
        let mut r = record(app, child, offset, &[], None);
        let mut m: Message = serde_json::from_slice(r.payload().unwrap()).unwrap();
        if let Message::Update(u) = &mut m {
            u.parent_player_id = to;
        }
        r.set_payload(Some(m.to_bytes()));
        r
    };
    let mut older = asking(1, Some(parent));
    merge(&key, &mut older, asking(2, Some(parent)));
    merge(&key, &mut older, asking(3, None));
    merge(&key, &mut older, asking(4, Some(Uuid::new_v4())));
    let offsets: Vec<i64> = changes(&older).iter().map(|c| c.offset).collect();
    assert_eq!(
        offsets,
        vec![3, 4],
        "the repeat and the plain update fold; a new target does not"
    );
    let Message::Update(first) = &changes(&older)[0].message else {
        panic!("an update")
    };
    assert_eq!(
        first.parent_player_id,
        Some(parent),
        "the link request survives"
    );
}
