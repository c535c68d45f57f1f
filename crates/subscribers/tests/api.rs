//! Every endpoint of the subscriber API and every refusal, against the real broker and database:
//! 401 without a valid credential, 403 across apps, 400 naming the field, 413 for big bodies —
//! and nothing written to Kafka for any refused request.

mod support;

use kafkaesque_subscribers::Roles;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

fn assert_refused(got: (StatusCode, Value), status: StatusCode, naming: &str) {
    let (s, body) = got;
    assert_eq!(s, status, "{body}");
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("JSON errors: {body}"));
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap_or_default().contains(naming)),
        "an error naming {naming:?}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_every_refusal_writes_nothing() {
    let rig = Rig::new("api", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let admin = format!("Bearer {ADMIN_TOKEN}");

    // Apps: admin token only.
    let apps = "/api/v1/apps";
    let named = json!({"name": "a"});
    assert_refused(
        c.must(Method::POST, apps, None, Some(&named)).await,
        StatusCode::UNAUTHORIZED,
        "Authorization",
    );
    let wrong = Some("Bearer nope");
    assert_refused(
        c.must(Method::POST, apps, wrong, Some(&named)).await,
        StatusCode::UNAUTHORIZED,
        "admin token",
    );
    let bad = json!({"name": "a", "owner": "me"});
    assert_refused(
        c.must(Method::POST, apps, Some(&admin), Some(&bad)).await,
        StatusCode::BAD_REQUEST,
        "owner",
    );
    assert_refused(
        c.must(Method::POST, apps, Some(&admin), Some(&json!({})))
            .await,
        StatusCode::BAD_REQUEST,
        "name",
    );
    let (a, b) = (c.create_app("alpha").await, c.create_app("beta").await);
    assert_ne!(a.key, b.key);

    // Creating subscriptions.
    let players = "/api/v1/players";
    let ok = json!({"app_id": a.id, "device_type": 1, "language": "en", "timezone": 3600, "tags": {"level": "3"}});
    assert_refused(
        c.must(Method::POST, players, None, Some(&ok)).await,
        StatusCode::UNAUTHORIZED,
        "Authorization",
    );
    assert_refused(
        c.must(Method::POST, players, Some("Key nope"), Some(&ok))
            .await,
        StatusCode::UNAUTHORIZED,
        "api key",
    );
    assert_refused(
        c.must(Method::POST, players, Some(&b.auth()), Some(&ok))
            .await,
        StatusCode::FORBIDDEN,
        "app_id",
    );
    let cases = [
        (json!({"app_id": a.id}), "device_type"),
        (json!({"device_type": 1}), "app_id"),
        (json!({"app_id": "nope", "device_type": 1}), "app_id"),
        (
            json!({"app_id": a.id, "device_type": 1, "timezone": "x"}),
            "timezone",
        ),
        (json!({"app_id": a.id, "device_type": 99}), "device_type"),
        (
            json!({"app_id": a.id, "device_type": 1, "colour": "red"}),
            "colour",
        ),
        (
            json!({"app_id": a.id, "device_type": 1, "tags": {"k": [5]}}),
            "tags.k",
        ),
    ];
    for (body, field) in &cases {
        let got = c
            .must(Method::POST, players, Some(&a.auth()), Some(body))
            .await;
        assert_refused(got, StatusCode::BAD_REQUEST, field);
    }
    let not_json = c
        .http_raw(Method::POST, players, &a.auth(), "{\"app_id\":")
        .await;
    assert_refused(not_json, StatusCode::BAD_REQUEST, "JSON");
    let id = c.create_player(&a, ok.clone()).await;
    let other = c
        .create_player(&b, json!({"app_id": b.id, "device_type": 0}))
        .await;

    // Updating them.
    let path = format!("/api/v1/players/{id}");
    let upd = json!({"app_id": a.id, "country": "us"});
    assert_refused(
        c.must(Method::PUT, &path, None, Some(&upd)).await,
        StatusCode::UNAUTHORIZED,
        "Authorization",
    );
    assert_refused(
        c.must(Method::PUT, &path, Some(&b.auth()), Some(&upd))
            .await,
        StatusCode::FORBIDDEN,
        "app_id",
    );
    assert_refused(
        c.must(
            Method::PUT,
            "/api/v1/players/123",
            Some(&a.auth()),
            Some(&upd),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "id",
    );
    let many: serde_json::Map<String, Value> =
        (0..1025).map(|i| (format!("t{i}"), json!("v"))).collect();
    let cases = [
        (json!({"app_id": a.id, "lat": 91.0, "long": 0.0}), "lat"),
        (json!({"app_id": a.id, "lat": 10.0}), "long"),
        (json!({"app_id": a.id, "lat": 1.0, "long": -181.0}), "long"),
        (json!({"app_id": a.id, "country": "USA"}), "country"),
        (json!({"app_id": a.id, "email": "not-an-address"}), "email"),
        (
            json!({"app_id": a.id, "tags": {"k": "v".repeat(129)}}),
            "tags.k",
        ),
        (
            json!({"app_id": a.id, "tags": {"k".repeat(129): "v"}}),
            "tags",
        ),
        (json!({"app_id": a.id, "tags": many}), "tags"),
        (json!({"app_id": a.id, "timezone": 99999}), "timezone"),
        (json!({"app_id": a.id, "device_type": 99}), "device_type"),
        (
            json!({"app_id": a.id, "session_count": -1}),
            "session_count",
        ),
        (
            json!({"app_id": a.id, "amount_spent": -0.5}),
            "amount_spent",
        ),
        (
            json!({"app_id": a.id, "game_version": "1".repeat(257)}),
            "game_version",
        ),
        (
            json!({"app_id": a.id, "email": "a@example.com", "parent_player_id": id}),
            "parent_player_id",
        ),
        (
            json!({"app_id": a.id, "device_player_id": id}),
            "device_player_id",
        ),
        (json!({"app_id": a.id, "tags": {"k": {"x": 1}}}), "tags.k"),
    ];
    for (body, field) in &cases {
        let got = c
            .must(Method::PUT, &path, Some(&a.auth()), Some(body))
            .await;
        assert_refused(got, StatusCode::BAD_REQUEST, field);
    }
    let huge = json!({"app_id": a.id, "external_user_id": "x".repeat(70 * 1024)});
    assert_refused(
        c.must(Method::PUT, &path, Some(&a.auth()), Some(&huge))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body",
    );
    assert_eq!(
        rig.written(),
        2,
        "only the two accepted creates were written"
    );

    let update = json!({"app_id": a.id, "country": "us", "lat": 41.9, "long": -87.6, "tags": {"level": null, "vip": "yes"}});
    c.update(&a, id, &update).await;
    assert_eq!(rig.written(), 3);

    // Reading them back, once the consumer has applied the update.
    let shown = eventually("the update applied", WITHIN, || async {
        let (s, v) = c.player(&a, id).await;
        (s == StatusCode::OK && v["country"] == "US").then_some(v)
    })
    .await;
    assert_eq!(shown["id"], json!(id));
    assert_eq!(shown["app_id"], json!(a.id));
    assert_eq!(
        (shown["device_type"].clone(), shown["language"].clone()),
        (json!(1), json!("en"))
    );
    assert_eq!(
        (shown["timezone"].clone(), shown["lat"].clone()),
        (json!(3600), json!(41.9))
    );
    assert_eq!(shown["tags"], json!({"vip": "yes"}));
    assert_eq!(shown["parent_player_id"], Value::Null);
    let nulls: Vec<_> = shown
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v.is_null())
        .collect();
    assert!(nulls.is_empty(), "unset fields are left out: {nulls:?}");
    assert!(shown["created_at"].as_i64().unwrap() > 0 && shown["updated_at"].is_i64());

    let get = |app: Uuid, player: Uuid| format!("/api/v1/players/{player}?app_id={app}");
    assert_refused(
        c.must(Method::GET, &get(a.id, id), None, None).await,
        StatusCode::UNAUTHORIZED,
        "Authorization",
    );
    assert_refused(
        c.must(Method::GET, &get(a.id, id), Some(&b.auth()), None)
            .await,
        StatusCode::FORBIDDEN,
        "app_id",
    );
    assert_refused(
        c.must(Method::GET, &get(a.id, other), Some(&a.auth()), None)
            .await,
        StatusCode::NOT_FOUND,
        "id",
    );
    assert_refused(
        c.must(
            Method::GET,
            &get(a.id, Uuid::new_v4()),
            Some(&a.auth()),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "id",
    );
    let no_app = format!("/api/v1/players/{id}");
    assert_refused(
        c.must(Method::GET, &no_app, Some(&a.auth()), None).await,
        StatusCode::BAD_REQUEST,
        "app_id",
    );

    // Service endpoints.
    let (s, doc) = c.must(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    for p in [
        "/api/v1/apps",
        "/api/v1/apps/{id}/key",
        "/api/v1/players",
        "/api/v1/players/{id}",
        "/api/v1/apps/{app_id}/users/{external_user_id}",
        "/admin/skip",
        "/admin/top",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][p].is_object(), "openapi lists {p}");
    }
    let (s, ready) = c.must(Method::GET, "/readyz", None, None).await;
    assert_eq!((s, ready["ready"].clone()), (StatusCode::OK, json!(true)));
    let (s, metrics) = c.must(Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("subscribers_updates_accepted_total"),
        "{metrics}"
    );
    assert_refused(
        c.must(Method::GET, "/nowhere", None, None).await,
        StatusCode::NOT_FOUND,
        "endpoint",
    );
    assert_refused(
        c.must(Method::DELETE, "/api/v1/apps", None, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method",
    );
    service.stop().await;
}

#[tokio::test]
async fn admin_endpoints_refuse_everything_while_no_token_is_set() {
    let mut rig = Rig::new("no-admin", 1).await;
    rig.config.admin_token = None;
    let service = Running::start(&rig.config, Roles::API).await;
    let c = service.client();
    let any = Some("Bearer anything");
    let target = json!({"app_id": Uuid::new_v4()});
    for (method, path, body) in [
        (Method::POST, "/api/v1/apps", Some(json!({"name": "x"}))),
        (Method::PUT, "/admin/skip", Some(target.clone())),
        (Method::DELETE, "/admin/skip", Some(target)),
        (Method::GET, "/admin/skip", None),
        (Method::GET, "/admin/top", None),
        (
            Method::POST,
            "/api/v1/apps/00000000-0000-0000-0000-000000000000/key",
            None,
        ),
        (
            Method::DELETE,
            "/api/v1/apps/00000000-0000-0000-0000-000000000000/key",
            None,
        ),
    ] {
        let got = c.must(method, path, any, body.as_ref()).await;
        assert_refused(got, StatusCode::FORBIDDEN, "KAFKAESQUE_ADMIN_TOKEN");
    }
    service.stop().await;
}
