use super::*;

fn update() -> Message {
    Message::Update(Update {
        player_id: Uuid::new_v4(),
        app_id: Uuid::new_v4(),
        fields: Fields {
            language: Some("en".into()),
            ..Fields::default()
        },
        tags: [("a".to_owned(), Some("1".to_owned()))].into(),
        email: None,
        parent_player_id: None,
    })
}

fn delete() -> Message {
    Message::Delete(Delete {
        player_id: Uuid::new_v4(),
        app_id: Uuid::new_v4(),
    })
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn every_message_written_carries_the_current_format_version() {
    for m in [update(), delete()] {
        let bytes = m.to_bytes();
        assert_eq!(json(&bytes)["version"], FORMAT_VERSION);
        assert_eq!(decode(&bytes).unwrap(), Decoded::Known(m));
    }
}

#[test]
fn a_delete_is_written_as_op_delete_with_its_player_and_app() {
    let m = delete();
    let v = json(&m.to_bytes());
    assert_eq!(v["op"], "delete");
    assert_eq!(v["player_id"], m.player_id().to_string());
    assert_eq!(v["app_id"], m.app_id().to_string());
}

#[test]
fn a_message_without_a_version_is_read_as_version_one() {
    let m = update();
    let unversioned = serde_json::to_vec(&m).unwrap();
    assert!(json(&unversioned).get("version").is_none());
    assert_eq!(decode(&unversioned).unwrap(), Decoded::Known(m));
}

#[test]
fn a_message_of_a_later_version_is_newer_even_when_its_fields_do_not_parse() {
    let payload = br#"{"version":3,"op":"update","player_id":7,"shape":"unknown"}"#;
    assert_eq!(
        decode(payload).unwrap(),
        Decoded::Newer(Newer {
            version: 3,
            op: "update".into()
        })
    );
}

#[test]
fn an_op_this_build_does_not_know_is_newer_at_any_version() {
    for payload in [
        &br#"{"op":"merge","player_id":"x"}"#[..],
        br#"{"version":2,"op":"merge"}"#,
    ] {
        let Decoded::Newer(newer) = decode(payload).unwrap() else {
            panic!("newer")
        };
        assert_eq!(newer.op, "merge");
    }
}

#[test]
fn a_payload_that_is_no_message_of_any_version_is_an_error() {
    for payload in [
        &b"not json"[..],
        br#"{"player_id":"x"}"#,
        br#"{"version":0,"op":"update"}"#,
        br#"{"version":2,"op":"update","player_id":"not a uuid"}"#,
        br#"{"version":"2","op":"update"}"#,
    ] {
        assert!(
            decode(payload).is_err(),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn a_batch_keeps_changes_and_newer_messages_in_order_with_their_offsets() {
    let newer = Newer {
        version: 9,
        op: "update".into(),
    };
    let (first, last) = (update(), delete());
    let mut batch = Batch::default();
    batch.push(&Change {
        offset: 1,
        message: first.clone(),
    });
    batch.push_newer(2, &newer);
    batch.push(&Change {
        offset: 3,
        message: last.clone(),
    });
    let entries = Batch::parse(&batch.clone().into_bytes()).unwrap();
    assert_eq!(
        entries,
        vec![
            Entry::Change(Change {
                offset: 1,
                message: first
            }),
            Entry::Newer {
                offset: 2,
                newer: newer.clone()
            },
            Entry::Change(Change {
                offset: 3,
                message: last
            }),
        ]
    );
    assert_eq!(
        entries.iter().map(Entry::offset).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn popping_a_batch_whose_last_line_is_newer_gives_nothing_and_keeps_the_line() {
    let mut batch = Batch::default();
    batch.push(&Change {
        offset: 1,
        message: update(),
    });
    batch.push_newer(
        2,
        &Newer {
            version: 3,
            op: "update".into(),
        },
    );
    assert_eq!(batch.pop(), None);
    assert_eq!(Batch::parse(&batch.into_bytes()).unwrap().len(), 2);
}
