//! Deletes against a real database: the row goes, its tombstone stays, its links leave the link
//! table and the link cache, and nothing later brings it back.

use super::*;
use crate::apply::changes;
use crate::message::email_parent_id;

fn on(change: &Change, route: Uuid) -> Record {
    test_record(&change.message, change.offset, Some(route))
}

async fn links_of(db: &Db, parent: Uuid) -> i64 {
    db.client
        .query_one(
            "SELECT count(*) FROM links WHERE parent_id = $1",
            &[&parent],
        )
        .await
        .expect("links")
        .get(0)
}

async fn tombstone(db: &Db, id: Uuid) -> Option<(Uuid, i64)> {
    db.client
        .query_opt(
            "SELECT app_id, source_offset FROM deleted_players WHERE id = $1",
            &[&id],
        )
        .await
        .expect("tombstone")
        .map(|r| (r.get(0), r.get(1)))
}

/// A child created at offset 1 and linked at 2 to the email parent of `p@example.com`, with the
/// link in the cache as the router would have it.
async fn linked(db: &Db, applier: &Applier, links: &LinkCache) -> (Uuid, Uuid) {
    let child = db.create(1).await;
    let parent = email_parent_id(db.app, "p@example.com");
    let link = changes::update(db.app, child, 2, "en", &[], Some("p@example.com"));
    applier.handle(on(&link, child)).await.expect("child");
    applier.handle(on(&link, parent)).await.expect("parent");
    links.absorb([(db.app, child, parent)]);
    assert_eq!(links_of(db, parent).await, 1);
    (child, parent)
}

#[tokio::test]
async fn a_deleted_parent_takes_its_links_and_a_later_update_of_it_is_dead_lettered() {
    let db = Db::new("apply_delete_parent").await;
    let links = LinkCache::default();
    let applier = db.applier.clone().with_links(links.clone());
    let (child, parent) = linked(&db, &applier, &links).await;

    let delete = changes::delete(db.app, parent, 3);
    applier.handle(on(&delete, parent)).await.expect("deleted");
    assert_eq!(db.row(parent).await, None);
    assert_eq!(tombstone(&db, parent).await, Some((db.app, 3)));
    assert_eq!(links_of(&db, parent).await, 0);
    assert!(links.is_empty(), "the cache forgot the child's link");

    // Replays change nothing; a later update is refused; a new link request does not bring
    // the parent back.
    let link = changes::update(db.app, child, 2, "en", &[], Some("p@example.com"));
    applier.handle(on(&link, parent)).await.expect("replayed");
    applier.handle(on(&delete, parent)).await.expect("replayed");
    let later = changes::update(db.app, parent, 4, "fr", &[], None);
    let refused = applier.handle(on(&later, parent)).await.unwrap_err();
    assert_eq!(
        (refused.kind, refused.reason),
        (FailureKind::Fatal, "deleted_player")
    );
    let again = changes::update(db.app, child, 5, "de", &[], Some("p@example.com"));
    applier
        .handle(on(&again, parent))
        .await
        .expect("refused link");
    assert_eq!(db.row(parent).await, None);
    assert_eq!(tombstone(&db, parent).await, Some((db.app, 3)));
    let row = db.row(child).await.expect("the child stays");
    assert_eq!(row.source_offset, 2);
}

#[tokio::test]
async fn a_deleted_child_is_unlinked_on_its_parent_and_its_replayed_create_does_not_bring_it_back()
{
    let db = Db::new("apply_delete_child").await;
    let links = LinkCache::default();
    let applier = db.applier.clone().with_links(links.clone());
    let (child, parent) = linked(&db, &applier, &links).await;

    let delete = changes::delete(db.app, child, 3);
    applier.handle(on(&delete, child)).await.expect("deleted");
    applier.handle(on(&delete, parent)).await.expect("unlinked");
    assert_eq!(db.row(child).await, None);
    assert_eq!(links_of(&db, parent).await, 0);
    let p = db.row(parent).await.expect("the parent stays");
    assert_eq!((p.linked_children, p.source_offset), (0, 3));

    let create = changes::create(db.app, child, 1);
    applier.handle(on(&create, child)).await.expect("replayed");
    assert_eq!(db.row(child).await, None, "a replayed create is skipped");
    let later = changes::create(db.app, child, 4);
    let refused = applier.handle(on(&later, child)).await.unwrap_err();
    assert_eq!(refused.reason, "deleted_player");
    assert_eq!(db.row(child).await, None);
}

#[tokio::test]
async fn another_apps_delete_is_dead_lettered_and_deletes_nothing() {
    let db = Db::new("apply_delete_foreign").await;
    let id = db.create(1).await;
    let delete = changes::delete(Uuid::new_v4(), id, 2);
    let refused = db.applier.handle(on(&delete, id)).await.unwrap_err();
    assert_eq!(refused.reason, "foreign_player");
    assert!(db.row(id).await.is_some());
    assert_eq!(tombstone(&db, id).await, None);
}
