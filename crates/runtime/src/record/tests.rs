use std::sync::Arc;

use bytes::Bytes;
use rdkafka::Timestamp;

use super::{Header, Record, RecordData};

fn record(key: Option<&'static [u8]>, payload: Option<&'static [u8]>) -> Record {
    Record::from(RecordData::fetched(
        Arc::from("t"),
        Arc::from(Vec::new()),
        (0, 7),
        (key, payload),
        std::iter::empty(),
        Timestamp::NotAvailable,
    ))
}

#[test]
fn rewriting_a_record_leaves_its_clones_as_they_were() {
    let original = record(Some(b"k"), Some(b"before"));
    let mut changed = original.clone();
    let newer = Record::from(RecordData {
        offset: 8,
        ..original.data().clone()
    });
    changed.absorb(&newer);
    changed.set_payload(Some(Bytes::from_static(b"after")));
    changed.push_header(Header {
        name: "batch".into(),
        value: None,
    });
    assert_eq!(original.payload(), Some(&b"before"[..]));
    assert_eq!((original.offset(), original.coalesced()), (7, 1));
    assert!(original.headers().is_empty());
    assert_eq!(changed.payload(), Some(&b"after"[..]));
    assert_eq!((changed.offset(), changed.coalesced()), (8, 2));
    assert_eq!(changed.headers().len(), 1);
}

#[test]
fn key_and_payload_come_back_as_they_were() {
    type Case<'a> = (Option<&'static [u8]>, Option<&'static [u8]>);
    let cases: [Case<'_>; 6] = [
        (Some(b"key"), Some(b"payload")),
        (Some(b"key"), None),
        (Some(b"key"), Some(b"")),
        (None, Some(b"payload")),
        (Some(b""), Some(b"payload")),
        (None, None),
    ];
    for (k, p) in cases {
        let r = record(k, p);
        assert_eq!(r.key(), k);
        assert_eq!(r.payload(), p);
        assert_eq!(r.key_bytes().map(|b| &b[..]), k);
        assert_eq!(r.payload_bytes().map(|b| &b[..]), p);
    }
}

#[test]
fn a_delivery_runs_under_its_key_unless_routed_elsewhere() {
    let r = record(Some(b"k"), Some(b"p"));
    assert_eq!(r.route().map(|k| &k[..]), Some(&b"k"[..]));
    let other = r.clone().with_route(Some(Bytes::from_static(b"row")));
    assert_eq!(other.route().map(|k| &k[..]), Some(&b"row"[..]));
    assert_eq!(other.key(), Some(&b"k"[..]));
    assert_eq!(r.clone().with_route(None).route(), None);
    assert_eq!(record(None, Some(b"p")).route(), None);
    // Equal when they run under the same key, however that key was given.
    assert_eq!(r.clone().with_route(r.key_bytes().cloned()), r);
    assert_ne!(other, r);
}

#[cfg(feature = "serde")]
#[test]
fn json_names_the_record_when_its_payload_is_not_the_type_asked_for() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Update {
        id: u32,
    }
    assert_eq!(
        record(None, Some(br#"{"id":3}"#)).json::<Update>().ok(),
        Some(Update { id: 3 })
    );
    let bad = record(None, Some(br#"{"id":"x"}"#))
        .json::<Update>()
        .unwrap_err();
    assert!(matches!(bad, super::JsonError::Invalid { .. }), "{bad}");
    assert!(bad.to_string().contains("t/0@7"), "{bad}");
    let none = record(None, None).json::<Update>().unwrap_err();
    assert!(matches!(none, super::JsonError::NoPayload { .. }), "{none}");
}
