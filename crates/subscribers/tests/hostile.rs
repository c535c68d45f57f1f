//! Hostile input, against the real broker and database.
//!
//! - Poison records written straight into the topic — bypassing the API's validation, as a
//!   buggy or malicious producer would — each end in the dead-letter topic with a reason header,
//!   and the consumer goes on applying the good records behind them.
//! - The authentication matrix: every endpoint refuses a missing credential, a wrong one and
//!   another app's key; admin endpoints refuse app keys; a refused request writes nothing, to
//!   Kafka or to PostgreSQL. (`api.rs` covers validation refusals and the happy paths.)
//! - Another app's attack: with a valid key and `app_id` of its own, an app names the victim
//!   app's subscriptions. Nothing of the victim's changes; every attacking record is
//!   dead-lettered with a reason.

mod support;

use std::time::{Duration, Instant};

use kafkaesque_runtime::headers;
use kafkaesque_subscribers::Roles;
use rdkafka::message::{Headers, Message};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_with_a_reason_and_the_consumer_keeps_going() {
    let rig = Rig::new("poison", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let app = c.create_app("poison").await;
    let id = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    let key = app.id.to_string();
    let marker = |what: &str| format!("{what}-{}", Uuid::new_v4());

    let not_json = marker("not-json");
    rig.produce(key.as_bytes(), format!("{{{not_json}").as_bytes())
        .await;
    let wrong_schema = marker("wrong-schema");
    // An `op` that is no name at all (an unknown name is a newer API's: held, see upgrade.rs).
    let body = json!({"op": ["upsert"], "player_id": id, "app_id": app.id, "note": wrong_schema});
    rig.produce(key.as_bytes(), body.to_string().as_bytes())
        .await;
    let bad_field = marker("bad-field");
    let body = json!({"op": "update", "player_id": id, "app_id": app.id, "timezone": "x", "note": bad_field});
    rig.produce(key.as_bytes(), body.to_string().as_bytes())
        .await;
    let wrong_key = marker("wrong-key");
    let body = json!({"op": "update", "player_id": id, "app_id": app.id, "note": wrong_key});
    rig.produce(
        Uuid::new_v4().to_string().as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    // An app that does not exist: its update finds no subscription, its create no app.
    let ghost_app = Uuid::new_v4();
    let (ghost_update, ghost_create) = (Uuid::new_v4(), Uuid::new_v4());
    let body =
        json!({"op": "update", "player_id": ghost_update, "app_id": ghost_app, "language": "en"});
    rig.produce(
        ghost_app.to_string().as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    let body =
        json!({"op": "create", "player_id": ghost_create, "app_id": ghost_app, "device_type": 1});
    rig.produce(
        ghost_app.to_string().as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    // Nearly a megabyte: larger than any request the API accepts.
    let huge = marker("huge");
    let payload = format!("{huge}{}", "x".repeat(900 * 1024));
    rig.produce(key.as_bytes(), payload.as_bytes()).await;
    c.update(
        &app,
        id,
        &json!({"app_id": app.id, "tags": {"after": "poison"}}),
    )
    .await;

    let markers = [
        not_json.clone(),
        wrong_schema.clone(),
        bad_field.clone(),
        wrong_key.clone(),
        ghost_update.to_string(),
        ghost_create.to_string(),
        huge.clone(),
    ];
    let reasons = tokio::task::block_in_place(|| dead_letters(&rig, &markers));
    let expected = [
        (not_json, "malformed"),
        (wrong_schema, "malformed"),
        (bad_field, "malformed"),
        (wrong_key, "malformed"),
        (ghost_update.to_string(), "unknown_player"),
        (ghost_create.to_string(), "invalid"),
        (huge, "malformed"),
    ];
    for (marker, reason) in expected {
        assert_eq!(reasons[&marker], reason, "dead letter of {marker}");
    }
    eventually(
        "the good update behind the poison applied",
        WITHIN,
        || async {
            let (s, v) = c.player(&app, id).await;
            (s == StatusCode::OK && v["tags"]["after"] == "poison").then_some(())
        },
    )
    .await;
    let (s, _) = c.must(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK, "the consumer process is alive");
    service.stop().await;
}

/// Rows the API could have written for a refused request: apps, subscriptions, skips.
async fn rows(rig: &Rig) -> Vec<i64> {
    let db = rig.database.connect().await.expect("database");
    let mut counts = Vec::new();
    for table in ["apps", "players", "skips"] {
        let row = db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count");
        counts.push(row.get(0));
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_missing_wrong_and_foreign_credentials_and_writes_nothing() {
    let rig = Rig::new("auth", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let (mine, theirs) = (c.create_app("mine").await, c.create_app("theirs").await);
    let id = c
        .create_player(&mine, json!({"app_id": mine.id, "device_type": 1}))
        .await;
    eventually("the subscription created", WITHIN, || async {
        (c.player(&mine, id).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let (rows_before, written_before) = (rows(&rig).await, rig.written());

    // App endpoints: every body below would be accepted with `mine`'s key.
    let player = format!("/api/v1/players/{id}");
    let read = format!("{player}?app_id={}", mine.id);
    let app_calls = [
        (
            Method::POST,
            "/api/v1/players".to_owned(),
            Some(json!({"app_id": mine.id, "device_type": 1})),
        ),
        (
            Method::PUT,
            player.clone(),
            Some(json!({"app_id": mine.id, "tags": {"x": "y"}})),
        ),
        (Method::GET, read.clone(), None),
        (Method::DELETE, read, None),
        (
            Method::GET,
            format!("/api/v1/players?app_id={}", mine.id),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/apps/{}/users/someone", mine.id),
            Some(json!({"tags": {"x": "y"}})),
        ),
    ];
    let wrong_key = format!("Key {}", "0".repeat(64));
    let admin_as_key = format!("Key {ADMIN_TOKEN}");
    let admin_as_bearer = format!("Bearer {ADMIN_TOKEN}");
    let theirs_as_basic = format!("Basic {}", theirs.key);
    for (method, path, body) in &app_calls {
        let refusals = [
            (None, StatusCode::UNAUTHORIZED),
            (Some(wrong_key.as_str()), StatusCode::UNAUTHORIZED),
            (Some(admin_as_key.as_str()), StatusCode::UNAUTHORIZED),
            (Some(admin_as_bearer.as_str()), StatusCode::UNAUTHORIZED),
            (Some("Key"), StatusCode::UNAUTHORIZED),
            (Some("Basic"), StatusCode::UNAUTHORIZED),
            (Some(&*theirs.auth()), StatusCode::FORBIDDEN),
            (Some(theirs_as_basic.as_str()), StatusCode::FORBIDDEN),
        ];
        for (auth, status) in refusals {
            let (s, v) = c.must(method.clone(), path, auth, body.as_ref()).await;
            assert_eq!(s, status, "{method} {path} with {auth:?}: {v}");
            assert!(v["errors"].is_array(), "a JSON refusal: {v}");
        }
    }

    // Admin endpoints: every body below would be accepted with the admin token.
    let target = json!({"player_id": id});
    let key_path = format!("/api/v1/apps/{}/key", mine.id);
    let admin_calls = [
        (
            Method::POST,
            "/api/v1/apps",
            Some(json!({"name": "intruder"})),
        ),
        (Method::GET, "/admin/skip", None),
        (Method::PUT, "/admin/skip", Some(target.clone())),
        (Method::DELETE, "/admin/skip", Some(target)),
        (Method::GET, "/admin/top", None),
        (Method::POST, &*key_path, None),
        (Method::DELETE, &*key_path, None),
    ];
    let wrong_token = "Bearer not-the-admin-token".to_owned();
    let key_as_bearer = format!("Bearer {}", mine.key);
    for (method, path, body) in &admin_calls {
        let refusals = [
            None,
            Some(wrong_token.as_str()),
            Some(&*mine.auth()),
            Some(key_as_bearer.as_str()),
            Some("Bearer"),
        ];
        for auth in refusals {
            let (s, v) = c.must(method.clone(), path, auth, body.as_ref()).await;
            assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}: {v}"
            );
            assert!(v["errors"].is_array(), "a JSON refusal: {v}");
        }
    }

    // Nothing written: no record, no row; the keys are as they were (a rotation or revocation
    // would have changed `mine`'s); and the subscription is as it was.
    assert_eq!(
        c.player(&mine, id).await.0,
        StatusCode::OK,
        "mine's key works"
    );
    assert_eq!(rig.written(), written_before, "records in the topic");
    assert_eq!(rows(&rig).await, rows_before, "apps, players, skips");
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let (_, skips) = c.must(Method::GET, "/admin/skip", Some(&admin), None).await;
    assert_eq!(skips["in_effect_here"], json!([]), "{skips}");
    assert_eq!(c.player(&mine, id).await.1["tags"], json!({}));
    service.stop().await;
}

#[test]
fn the_refusal_matrix_names_every_documented_operation() {
    // The matrix above must grow with the API: every operation the OpenAPI document gives a
    // security requirement is one of the calls it makes.
    let doc: Value = serde_json::from_str(kafkaesque_subscribers::api::openapi::document())
        .expect("openapi.json");
    let mut secured = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security").is_some() {
                secured.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    secured.sort();
    let covered = [
        "DELETE /admin/skip",
        "DELETE /api/v1/apps/{id}/key",
        "DELETE /api/v1/players/{id}",
        "GET /admin/skip",
        "GET /admin/top",
        "GET /api/v1/players",
        "GET /api/v1/players/{id}",
        "POST /api/v1/apps",
        "POST /api/v1/apps/{id}/key",
        "POST /api/v1/players",
        "PUT /admin/skip",
        "PUT /api/v1/apps/{app_id}/users/{external_user_id}",
        "PUT /api/v1/players/{id}",
    ];
    assert_eq!(secured, covered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_holding_nul_are_refused_at_the_edge_rather_than_lost_in_the_consumer() {
    // PostgreSQL stores U+0000 neither in text nor in jsonb. Before this was checked, an app name
    // holding it got a 500, and an update holding it was acknowledged and then dead-lettered by
    // the consumer: an acknowledged update lost. (Found by scripts/fuzz.)
    let rig = Rig::new("nul", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let app = c.create_app("nul").await;
    let id = c
        .create_player(&app, json!({"app_id": app.id, "device_type": 1}))
        .await;
    // The creation is applied asynchronously: count the rows once it is.
    eventually("the subscription created", WITHIN, || async {
        (c.player(&app, id).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let (rows_before, written_before) = (rows(&rig).await, rig.written());

    let named = json!({"name": "a\u{0}b"});
    let (s, v) = c
        .must(Method::POST, "/api/v1/apps", Some(&admin), Some(&named))
        .await;
    assert_eq!(
        (s, v["errors"][0].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("name: contains U+0000 (NUL), which cannot be stored")
        ),
        "{v}"
    );
    let creates = [
        (
            json!({"app_id": app.id, "device_type": 1, "identifier": "x\u{0}"}),
            "identifier",
        ),
        (
            json!({"app_id": app.id, "device_type": 1, "external_user_id": "\u{0}"}),
            "external_user_id",
        ),
        (
            json!({"app_id": app.id, "device_type": 1, "tags": {"k": "v\u{0}"}}),
            "tags.k",
        ),
        (
            json!({"app_id": app.id, "device_type": 1, "tags": {"k\u{0}": "v"}}),
            "tags",
        ),
    ];
    for (body, field) in &creates {
        let (s, v) = c
            .must(
                Method::POST,
                "/api/v1/players",
                Some(&app.auth()),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["errors"][0].as_str().unwrap().starts_with(field), "{v}");
    }
    let path = format!("/api/v1/players/{id}");
    let updates = [
        (json!({"app_id": app.id, "tags": {"k": "\u{0}"}}), "tags.k"),
        (
            json!({"app_id": app.id, "external_user_id": "a\u{0}"}),
            "external_user_id",
        ),
        (
            json!({"app_id": app.id, "email": "a\u{0}@example.com"}),
            "email",
        ),
    ];
    for (body, field) in &updates {
        let (s, v) = c
            .must(Method::PUT, &path, Some(&app.auth()), Some(body))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["errors"][0].as_str().unwrap().starts_with(field), "{v}");
    }
    assert_eq!(rig.written(), written_before, "records in the topic");
    assert_eq!(rows(&rig).await, rows_before, "apps, players, skips");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_updates_never_touch_the_victims_rows_or_links_and_are_dead_lettered() {
    // One partition: the attacker's offsets are above every offset the victim's rows hold, which
    // is what once let the attacker's tags onto the victim's email parent.
    let rig = Rig::new("tenant", 1).await;
    let service = Running::start(&rig.config, Roles::ALL).await;
    let c = service.client();
    let (victim, attacker) = (c.create_app("victim").await, c.create_app("attacker").await);
    let (child, parent) = c
        .linked_child(&victim, "owner@example.com", json!({"own": "1"}))
        .await;
    let (_, parent_before) = c.player(&victim, parent).await;
    assert_eq!(parent_before["tags"], json!({"own": "1"}), "mirrored");

    // The attacks: through the API, which cannot tell whose the id is without a read of its own
    // (and answers 200 as for any update not yet applied), and straight into the topic.
    let mine = |body: Value| {
        let mut body = body;
        body["app_id"] = json!(attacker.id);
        body
    };
    c.update(
        &attacker,
        child,
        &mine(json!({"tags": {"pwned": "tags"}, "language": "xx"})),
    )
    .await;
    c.update(
        &attacker,
        child,
        &mine(json!({"email": "attacker@example.com"})),
    )
    .await;
    c.update(
        &attacker,
        parent,
        &mine(json!({"tags": {"pwned": "parent"}})),
    )
    .await;
    let create =
        json!({"op": "create", "player_id": parent, "app_id": attacker.id, "device_type": 1});
    let key = attacker.id.to_string();
    rig.produce(key.as_bytes(), create.to_string().as_bytes())
        .await;

    // The victim's own update behind them applies: its rows' replay guards were not moved.
    let after = json!({"app_id": victim.id, "tags": {"after": "attack"}});
    c.update(&victim, child, &after).await;
    eventually("the victim's update behind the attack", WITHIN, || async {
        let (s, v) = c.player(&victim, parent).await;
        (s == StatusCode::OK && v["tags"]["after"] == "attack").then_some(())
    })
    .await;
    let (_, child_after) = c.player(&victim, child).await;
    assert_eq!(child_after["tags"], json!({"own": "1", "after": "attack"}));
    assert_eq!(child_after["language"], Value::Null);
    assert_eq!(
        child_after["parent_player_id"],
        json!(parent),
        "still linked"
    );
    let (_, parent_after) = c.player(&victim, parent).await;
    assert_eq!(parent_after["tags"], json!({"own": "1", "after": "attack"}));
    assert_eq!(parent_after["device_type"], parent_before["device_type"]);

    // Not silently dropped: each attack is a dead letter naming why.
    let dl = tokio::task::block_in_place(|| foreign_dead_letters(&rig, attacker.id, 4));
    assert_eq!(dl.len(), 4, "{dl:?}");
    assert!(dl.iter().all(|r| r == "foreign_player"), "{dl:?}");
    // And the attacker's app gained no row and no link.
    let db = rig.database.connect().await.expect("database");
    let theirs: i64 = db
        .query_one(
            "SELECT count(*) FROM players WHERE app_id = $1",
            &[&attacker.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(theirs, 0, "the attacker's app holds no row");
    service.stop().await;
}

/// The reasons of the first `n` dead letters of `app`'s records.
fn foreign_dead_letters(rig: &Rig, app: Uuid, n: usize) -> Vec<String> {
    let c = rig.dead_letter_reader();
    let app = app.to_string();
    let mut reasons = Vec::new();
    let deadline = Instant::now() + WITHIN;
    while reasons.len() < n && Instant::now() < deadline {
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        if m.key() != Some(app.as_bytes()) {
            continue;
        }
        let reason = m
            .headers()
            .and_then(|hs| hs.iter().find(|h| h.key == headers::REASON))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        reasons.push(reason.unwrap_or_default());
    }
    reasons
}
