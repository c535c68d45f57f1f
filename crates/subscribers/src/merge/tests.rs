use super::*;
use crate::message::{email_parent_id, row_key, test_record, Fields, Update};

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
    Batch::parse(r.payload.as_deref().unwrap()).unwrap()
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
    assert_eq!((older.offset, older.coalesced), (3, 3));
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
    older.payload = Some(Bytes::from_static(b"not\njson"));
    let mut newer = older.clone();
    newer.offset = 2;
    merge(b"malformed", &mut older, newer);
    assert_eq!(older.payload.as_deref(), Some(&b"not json\nnot json"[..]));
}
