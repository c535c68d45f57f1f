//! The applier against a real database: the one-statement update of a row keeps the replay rule,
//! writes what the plan would, and leaves everything else to the transaction.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafkaesque_runtime::FailureKind;
use kafkaesque_testkit::{require_postgres, TestDatabase};
use tokio_postgres::Client;

use super::*;
use crate::message::{test_record, Fields, NewPlayer};

struct Db {
    /// Dropped (connections and all) with the test.
    _database: TestDatabase,
    client: Client,
    store: Store,
    applier: Applier,
    app: Uuid,
}

impl Db {
    async fn new(prefix: &str) -> Db {
        Db::with_pool(prefix, 2).await
    }

    async fn with_pool(prefix: &str, connections: usize) -> Db {
        let database = require_postgres()
            .await
            .create_database(prefix)
            .await
            .expect("database");
        let mut client = database.connect().await.expect("connection");
        crate::migrations::migrate(&mut client, "test")
            .await
            .expect("migrations");
        let store =
            Store::new(database.config(), &crate::db::Tls::default(), connections).expect("pool");
        let app = Uuid::new_v4();
        store
            .create_app(app, "apply", app.as_bytes())
            .await
            .expect("app");
        let applier = Applier::new(store.clone(), SkipList::default(), 10);
        Db {
            _database: database,
            client,
            store,
            applier,
            app,
        }
    }

    /// A new row at `offset`, created through the applier.
    async fn create(&self, offset: i64) -> Uuid {
        let id = Uuid::new_v4();
        let m = Message::Create(NewPlayer {
            player_id: id,
            app_id: self.app,
            device_type: 1,
            identifier: None,
            fields: Fields::default(),
            tags: [("old".to_owned(), "x".to_owned())].into(),
        });
        self.applier
            .handle(test_record(&m, offset, Some(id)))
            .await
            .expect("created");
        id
    }

    async fn row(&self, id: Uuid) -> Option<plan::Row> {
        let client = self.store.client().await.expect("connection");
        rows::lock(&client, id).await.expect("row")
    }

    /// Applies `updates` (a row and its change each) while the pool's every connection is busy,
    /// so that they wait together; returns each handler's outcome.
    async fn apply_waiting(&self, updates: Vec<(Uuid, Change)>) -> Vec<Result<(), HandlerError>> {
        let busy = self.store.client().await.expect("the only connection");
        let handlers: Vec<_> = updates
            .iter()
            .map(|(id, change)| {
                let applier = self.applier.clone();
                let r = record(change, *id);
                tokio::spawn(async move { applier.handle(r).await })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.applier.batcher.waiting() < updates.len() {
            assert!(Instant::now() < deadline, "the updates never waited");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(busy);
        let mut outcomes = Vec::new();
        for h in handlers {
            outcomes.push(h.await.expect("handler task"));
        }
        outcomes
    }

    /// The row's version (`xmin`) and `updated_at`: both change whenever the row is rewritten.
    async fn version(&self, id: Uuid) -> (String, String) {
        let r = self
            .client
            .query_one(
                "SELECT xmin::text, updated_at::text FROM players WHERE id = $1",
                &[&id],
            )
            .await
            .expect("version");
        (r.get(0), r.get(1))
    }
}

fn update(
    app: Uuid,
    id: Uuid,
    offset: i64,
    language: &str,
    tags: &[(&str, Option<&str>)],
) -> Change {
    changes::update(app, id, offset, language, tags, None)
}

fn record(change: &Change, id: Uuid) -> Record {
    test_record(&change.message, change.offset, Some(id))
}

#[tokio::test]
async fn a_replayed_or_older_update_leaves_the_row_as_it_was() {
    let db = Db::new("apply_replay").await;
    let id = db.create(1).await;
    let newest = update(db.app, id, 5, "de", &[("a", Some("1"))]);
    db.applier
        .handle(record(&newest, id))
        .await
        .expect("applied");
    let (row, version) = (db.row(id).await, db.version(id).await);
    assert_eq!(row.as_ref().map(|r| r.source_offset), Some(5));
    db.applier
        .handle(record(&newest, id))
        .await
        .expect("replayed");
    let older = update(db.app, id, 3, "fr", &[("a", None)]);
    db.applier
        .handle(record(&older, id))
        .await
        .expect("replayed");
    assert_eq!(db.row(id).await, row);
    assert_eq!(db.version(id).await, version, "the row was rewritten");
}

/// Fields setting the device's `session_count` and `sdk`.
fn device(session_count: i64, sdk: Option<&str>) -> Fields {
    Fields {
        device: Box::new(crate::message::Device {
            session_count: Some(session_count),
            sdk: sdk.map(str::to_owned),
            amount_spent: Some(session_count as f64 / 2.0),
            ..Default::default()
        }),
        ..Fields::default()
    }
}

#[tokio::test]
async fn a_create_with_device_fields_is_saved_whole_in_the_transaction() {
    let db = Db::new("apply_device").await;
    let id = Uuid::new_v4();
    let m = Message::Create(NewPlayer {
        player_id: id,
        app_id: db.app,
        device_type: 0,
        identifier: Some("token".into()),
        fields: device(1, Some("android-4")),
        tags: BTreeMap::new(),
    });
    db.applier
        .handle(test_record(&m, 1, Some(id)))
        .await
        .expect("created");
    let row = db.row(id).await.expect("row");
    assert_eq!(row.fields, device(1, Some("android-4")));
}

#[tokio::test]
async fn an_update_of_the_row_itself_saves_what_the_plan_decides() {
    let db = Db::new("apply_same").await;
    let id = db.create(1).await;
    let steps = [
        update(db.app, id, 2, "de", &[("a", Some("1")), ("b", Some("2"))]),
        update(db.app, id, 3, "fr", &[("a", None), ("old", Some("y"))]),
        changes::with_fields(
            db.app,
            id,
            4,
            Fields {
                timezone: Some(-3600),
                lat: Some(41.9),
                long: Some(-87.6),
                country: Some("US".into()),
                external_user_id: Some("u-1".into()),
                ..Fields::default()
            },
            &[("b", None), ("c", None)],
            Some("ignored@example.com"),
        ),
        changes::with_fields(db.app, id, 5, device(3, Some("ios-3")), &[], None),
        changes::with_fields(db.app, id, 6, device(4, None), &[("d", Some("4"))], None),
    ];
    for step in steps {
        let before = db.row(id).await;
        let step = [step];
        let planned = plan::plan(id, before, &step, &Known::default()).expect("planned");
        let applied = db.applier.try_apply(db.app, id, &step).await;
        let Ok((applied, _)) = applied else {
            panic!("the update at {} did not apply", step[0].offset)
        };
        assert_eq!(applied, planned);
        assert_eq!(db.row(id).await, planned.save);
    }
}

#[tokio::test]
async fn a_batch_applied_in_part_before_applies_only_its_newer_changes() {
    let db = Db::new("apply_partial").await;
    let id = db.create(1).await;
    let old = update(db.app, id, 5, "de", &[]);
    db.applier.handle(record(&old, id)).await.expect("applied");
    let batch = [old, update(db.app, id, 6, "fr", &[("a", Some("1"))])];
    let Ok((applied, _)) = db.applier.try_apply(db.app, id, &batch).await else {
        panic!("the batch did not apply")
    };
    assert_eq!(applied.replayed, 1);
    let row = db.row(id).await.expect("row");
    assert_eq!(
        (row.fields.language.as_deref(), row.source_offset),
        (Some("fr"), 6)
    );
}

#[tokio::test]
async fn an_update_of_a_missing_or_foreign_row_is_dead_lettered_naming_which() {
    let db = Db::new("apply_unknown").await;
    let id = db.create(1).await;
    let row = db.row(id).await;
    let missing = Uuid::new_v4();
    let foreign = Uuid::new_v4();
    for (app, target, reason) in [
        (db.app, missing, "unknown_player"),
        (foreign, id, "foreign_player"),
    ] {
        let e = db
            .applier
            .handle(record(&update(app, target, 7, "xx", &[]), target))
            .await
            .expect_err("refused");
        assert_eq!((e.kind, e.reason), (FailureKind::Fatal, reason));
    }
    assert_eq!(db.row(id).await, row);
    assert_eq!(db.row(missing).await, None);
}

/// A zombie handler (the row's previous owner after a rebalance) holds the row and writes a
/// newer offset; the update waiting for it must see that offset and apply nothing.
#[tokio::test]
async fn an_update_waiting_on_the_row_lock_checks_the_offset_it_finds() {
    let mut db = Db::new("apply_zombie").await;
    let id = db.create(1).await;
    let zombie = db.client.transaction().await.expect("transaction");
    zombie
        .execute("SELECT 1 FROM players WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .expect("locked");
    let applier = db.applier.clone();
    let waiting = update(db.app, id, 7, "new", &[]);
    let apply = tokio::spawn(async move { applier.handle(record(&waiting, id)).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waits: i64 = zombie
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if waits > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the update never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    zombie
        .execute(
            "UPDATE players SET language = 'zombie', source_offset = 9 WHERE id = $1",
            &[&id],
        )
        .await
        .expect("zombie write");
    zombie.commit().await.expect("zombie commit");
    apply.await.expect("task").expect("replayed");
    let row = db.row(id).await.expect("row");
    assert_eq!(
        (row.fields.language.as_deref(), row.source_offset),
        (Some("zombie"), 9)
    );
}

#[tokio::test]
async fn updates_waiting_for_a_connection_are_written_in_one_statement() {
    let db = Db::with_pool("apply_together", 1).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(db.create(1).await);
    }
    let replay = update(db.app, ids[2], 1, "old", &[]);
    let mut updates: Vec<_> = ids[..2]
        .iter()
        .map(|id| (*id, update(db.app, *id, 4, "de", &[("old", None)])))
        .collect();
    updates.push((ids[2], replay));
    let outcomes = db.apply_waiting(updates).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let (a, b, c) = (
        db.row(ids[0]).await,
        db.row(ids[1]).await,
        db.row(ids[2]).await,
    );
    for row in [&a, &b] {
        let row = row.as_ref().expect("row");
        assert_eq!(
            (
                row.fields.language.as_deref(),
                row.tags.is_empty(),
                row.source_offset
            ),
            (Some("de"), true, 4)
        );
    }
    assert_eq!(
        c.map(|r| r.source_offset),
        Some(1),
        "the replay was applied"
    );
    let (va, vb) = (db.version(ids[0]).await, db.version(ids[1]).await);
    assert_eq!(va.0, vb.0, "written in two transactions");
}

#[tokio::test]
async fn a_record_the_database_refuses_fails_alone_when_written_together() {
    let db = Db::with_pool("apply_poison", 1).await;
    let (good, poison) = (db.create(1).await, db.create(1).await);
    let outcomes = db
        .apply_waiting(vec![
            (good, update(db.app, good, 4, "de", &[])),
            (poison, update(db.app, poison, 5, "nul\0", &[])),
        ])
        .await;
    assert_eq!(outcomes[0], Ok(()));
    let refused = outcomes[1].as_ref().expect_err("refused");
    assert_eq!(
        (refused.kind, refused.reason),
        (FailureKind::Fatal, "invalid")
    );
    assert_eq!(db.row(good).await.map(|r| r.source_offset), Some(4));
    assert_eq!(db.row(poison).await.map(|r| r.source_offset), Some(1));
}

mod deletes;
