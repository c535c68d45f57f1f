//! OneSignal's players API, end to end against the real broker and database: the whole Player
//! model kept and shown back without nulls, tag values of any scalar type, the list, tags by
//! external user id, OneSignal's own email linking, and the app key under every scheme.

mod support;

use kafkaesque_subscribers::Roles;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

/// The subscription once `ready` holds of what GET shows.
async fn shown(c: &Client, app: &App, id: Uuid, ready: impl Fn(&Value) -> bool) -> Value {
    eventually("the change applied", WITHIN, || async {
        let (s, v) = c.player(app, id).await;
        (s == StatusCode::OK && ready(&v)).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_player_model_is_kept_and_shown_back_with_tags_as_strings() {
    let rig = Rig::new("model", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("model").await;
    let device = json!({
        "app_id": app.id, "device_type": 0, "identifier": "ce777617da7f548fe7a9ab6febb56",
        "language": "en", "timezone": -28800, "game_version": "1.1", "device_model": "iPhone5,1",
        "device_os": "7.0.4", "ad_id": "ad-1", "sdk": "ios-3.0", "session_count": 3,
        "amount_spent": 12.5, "created_at": 1_600_000_000, "playtime": 60, "badge_count": 2,
        "last_active": 1_700_000_000, "notification_types": 1, "test_type": 1,
        "long": -87.6, "lat": 41.9, "country": "us", "external_user_id": "user-1",
        "external_user_id_auth_hash": "ignored", "identifier_auth_hash": "ignored",
        "tags": {"level": 5, "ratio": 1.5, "vip": true, "name": "Jon", "gone": null, "empty": ""},
    });
    let id = c.create_player(&app, device).await;
    let v = shown(&c, &app, id, |_| true).await;
    for (field, want) in [
        ("device_type", json!(0)),
        ("game_version", json!("1.1")),
        ("device_model", json!("iPhone5,1")),
        ("device_os", json!("7.0.4")),
        ("ad_id", json!("ad-1")),
        ("sdk", json!("ios-3.0")),
        ("session_count", json!(3)),
        ("amount_spent", json!(12.5)),
        ("created_at", json!(1_600_000_000)),
        ("playtime", json!(60)),
        ("badge_count", json!(2)),
        ("last_active", json!(1_700_000_000)),
        ("notification_types", json!(1)),
        ("test_type", json!(1)),
        ("country", json!("US")),
        ("external_user_id", json!("user-1")),
    ] {
        assert_eq!(v[field], want, "{field}: {v}");
    }
    assert_eq!(
        v["tags"],
        json!({"level": "5", "ratio": "1.5", "vip": "true", "name": "Jon"})
    );
    assert!(v.get("external_user_id_auth_hash").is_none(), "{v}");

    // An update as OneSignal's SDKs send it: device_type always there; "" and null delete.
    let update = json!({
        "app_id": app.id, "device_type": 0, "session_count": 4, "tags": {"level": 6, "vip": "", "name": null},
    });
    c.update(&app, id, &update).await;
    let v = shown(&c, &app, id, |v| v["session_count"] == 4).await;
    assert_eq!(v["tags"], json!({"level": "6", "ratio": "1.5"}));
    assert_eq!(
        (v["sdk"].clone(), v["playtime"].clone()),
        (json!("ios-3.0"), json!(60))
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_key_is_taken_as_key_bearer_or_basic_on_every_players_endpoint() {
    let rig = Rig::new("schemes", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("schemes").await;
    for scheme in ["Key", "Bearer", "Basic", "basic"] {
        let auth = format!("{scheme} {}", app.key);
        let body = json!({"app_id": app.id, "device_type": 1});
        let (s, v) = c
            .must(Method::POST, "/api/v1/players", Some(&auth), Some(&body))
            .await;
        assert_eq!(
            (s, v["success"].clone()),
            (StatusCode::OK, json!(true)),
            "{scheme}: {v}"
        );
        let list = format!("/api/v1/players?app_id={}", app.id);
        let (s, v) = c.must(Method::GET, &list, Some(&auth), None).await;
        assert_eq!(s, StatusCode::OK, "{scheme}: {v}");
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_pages_through_one_apps_subscriptions_by_id_at_most_300_at_a_time() {
    let rig = Rig::new("list", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let (app, other) = (c.create_app("list").await, c.create_app("other").await);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            c.create_player(&app, json!({"app_id": app.id, "device_type": 1}))
                .await,
        );
    }
    c.create_player(&other, json!({"app_id": other.id, "device_type": 1}))
        .await;
    ids.sort();
    let page = |limit: &str, offset: &str| {
        format!(
            "/api/v1/players?app_id={}&limit={limit}&offset={offset}",
            app.id
        )
    };
    let first = eventually("all five applied", WITHIN, || async {
        let (s, v) = c
            .must(Method::GET, &page("2", "0"), Some(&app.auth()), None)
            .await;
        (s == StatusCode::OK && v["total_count"] == 5).then_some(v)
    })
    .await;
    assert_eq!(
        (first["offset"].clone(), first["limit"].clone()),
        (json!(0), json!(2))
    );
    let mut seen: Vec<Uuid> = Vec::new();
    for offset in ["0", "2", "4"] {
        let (_, v) = c
            .must(Method::GET, &page("2", offset), Some(&app.auth()), None)
            .await;
        for p in v["players"].as_array().unwrap() {
            assert_eq!(p["app_id"], json!(app.id));
            seen.push(p["id"].as_str().unwrap().parse().unwrap());
        }
    }
    assert_eq!(seen, ids, "every subscription once, by id");
    let all = format!("/api/v1/players?app_id={}", app.id);
    let (_, v) = c.must(Method::GET, &all, Some(&app.auth()), None).await;
    assert_eq!(
        (v["limit"].clone(), v["players"].as_array().unwrap().len()),
        (json!(300), 5)
    );
    for (limit, offset, field) in [
        ("301", "0", "limit"),
        ("0", "0", "limit"),
        ("x", "0", "limit"),
        ("1", "-1", "offset"),
    ] {
        let (s, v) = c
            .must(Method::GET, &page(limit, offset), Some(&app.auth()), None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["errors"][0].as_str().unwrap().starts_with(field), "{v}");
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_by_external_user_id_reach_every_applied_subscription_of_that_user_and_no_other() {
    let rig = Rig::new("users", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let (app, other) = (c.create_app("users").await, c.create_app("other").await);
    let body = |app: &App, user: &str| json!({"app_id": app.id, "device_type": 1, "external_user_id": user, "tags": {"a": "1"}});
    let phone = c.create_player(&app, body(&app, "jon")).await;
    let laptop = c.create_player(&app, body(&app, "jon")).await;
    let someone_else = c.create_player(&app, body(&app, "ana")).await;
    let other_app = c.create_player(&other, body(&other, "jon")).await;
    for (a, id) in [
        (&app, phone),
        (&app, laptop),
        (&app, someone_else),
        (&other, other_app),
    ] {
        shown(&c, a, id, |_| true).await;
    }
    let path = format!("/api/v1/apps/{}/users/jon", app.id);
    let edit = json!({"tags": {"a": null, "level": 7}});
    let (s, v) = c
        .must(Method::PUT, &path, Some(&app.auth()), Some(&edit))
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"success": true})));
    for id in [phone, laptop] {
        let v = shown(&c, &app, id, |v| v["tags"]["level"] == "7").await;
        assert_eq!(v["tags"], json!({"level": "7"}));
    }
    let untouched = c.player(&app, someone_else).await.1;
    assert_eq!(untouched["tags"], json!({"a": "1"}));
    assert_eq!(
        c.player(&other, other_app).await.1["tags"],
        json!({"a": "1"})
    );

    let nobody = format!("/api/v1/apps/{}/users/nobody", app.id);
    let (s, v) = c
        .must(Method::PUT, &nobody, Some(&app.auth()), Some(&edit))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("external_user_id"),
        "{v}"
    );
    let foreign = format!("/api/v1/apps/{}/users/jon", other.id);
    let (s, _) = c
        .must(Method::PUT, &foreign, Some(&app.auth()), Some(&edit))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onesignals_email_linking_ties_devices_to_an_email_subscription_and_mirrors_them() {
    let rig = Rig::new("email-link", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("email").await;
    let phone = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    // As the SDKs' setEmail does: the email subscription, naming the device it belongs to.
    let email = json!({
        "app_id": app.id, "device_type": 11, "identifier": "Jon@Example.com",
        "email_auth_hash": "ignored", "device_player_id": phone,
    });
    let parent = c.create_player(&app, email.clone()).await;
    let linked = shown(&c, &app, phone, |v| v["parent_player_id"].is_string()).await;
    assert_eq!(linked["parent_player_id"], json!(parent));
    let p = c.player(&app, parent).await.1;
    assert_eq!(
        (p["device_type"].clone(), p["identifier"].clone()),
        (json!(11), json!("jon@example.com"))
    );
    // Created again: the same subscription, as OneSignal answers for a known identifier.
    assert_eq!(c.create_player(&app, email).await, parent);

    // A second device, by `parent_player_id` on its update; its changes mirror onto the parent.
    let tablet = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    let link = json!({"app_id": app.id, "parent_player_id": parent, "tags": {"from": "tablet"}});
    c.update(&app, tablet, &link).await;
    shown(&c, &app, tablet, |v| v["parent_player_id"] == json!(parent)).await;
    shown(&c, &app, parent, |v| v["tags"]["from"] == "tablet").await;

    // The shortcut names the same parent.
    let laptop = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    c.update(
        &app,
        laptop,
        &json!({"app_id": app.id, "email": "jon@example.com"}),
    )
    .await;
    shown(&c, &app, laptop, |v| v["parent_player_id"] == json!(parent)).await;

    // `parent_player_id` naming a subscription that is no email subscription links nothing.
    let stray = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    let wrong = json!({"app_id": app.id, "parent_player_id": tablet, "language": "fr"});
    c.update(&app, stray, &wrong).await;
    let v = shown(&c, &app, stray, |v| v["language"] == "fr").await;
    assert!(v.get("parent_player_id").is_none(), "{v}");
    service.stop().await;
}
