//! Deletes through the running service, the real broker and PostgreSQL: a deleted email parent
//! goes with its links, its child stays and keeps applying, and a later update of the deleted
//! subscription is dead-lettered as `deleted_player` rather than bringing it back.

mod support;

use kafkaesque_subscribers::message::{Delete, Message};
use kafkaesque_subscribers::Roles;
use reqwest::StatusCode;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_parent_goes_with_its_links_and_a_later_update_of_it_is_dead_lettered() {
    let rig = Rig::new("deletes", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("deletes").await;
    let (child, parent) = c
        .linked_child(&app, "gone@example.com", json!({"a": "1"}))
        .await;

    let delete = Message::Delete(Delete {
        player_id: parent,
        app_id: app.id,
    });
    rig.produce(app.id.to_string().as_bytes(), &delete.to_bytes())
        .await;
    eventually("the parent deleted", WITHIN, || async {
        (c.player(&app, parent).await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let (_, v) = c.player(&app, child).await;
    assert!(v["parent_player_id"].is_null(), "unlinked: {v}");

    // The parent's later update is refused; the child's applies, and mirrors nowhere.
    c.update(
        &app,
        parent,
        &json!({"app_id": app.id, "tags": {"back": "1"}}),
    )
    .await;
    c.update(
        &app,
        child,
        &json!({"app_id": app.id, "tags": {"after": "1"}}),
    )
    .await;
    let reasons = tokio::task::block_in_place(|| dead_letters(&rig, &[parent.to_string()]));
    assert_eq!(reasons[&parent.to_string()], "deleted_player");
    eventually("the child's update applied", WITHIN, || async {
        let (_, v) = c.player(&app, child).await;
        (v["tags"]["after"] == "1").then_some(())
    })
    .await;
    assert_eq!(c.player(&app, parent).await.0, StatusCode::NOT_FOUND);
    let db = rig.database.connect().await.expect("database");
    let links: i64 = db
        .query_one(
            "SELECT count(*) FROM links WHERE parent_id = $1",
            &[&parent],
        )
        .await
        .expect("links")
        .get(0);
    assert_eq!(links, 0);
    service.stop().await;
}
