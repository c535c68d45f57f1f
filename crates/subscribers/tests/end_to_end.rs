//! The whole path — HTTP API, Kafka, the engine, PostgreSQL — against a model: 1,000
//! subscriptions in 3 apps, 20,000 random updates (some linking subscriptions to email
//! subscriptions, some moving them), and the stored state must equal the state computed by
//! applying the same updates in order in memory. Once as is, once with the consumer stopped and
//! a new one started while the updates are still coming.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafkaesque_subscribers::message::email_parent_id;
use kafkaesque_subscribers::Roles;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use support::*;
use uuid::Uuid;

const APPS: usize = 3;
const PLAYERS: usize = 1_000;
const UPDATES: usize = 20_000;
/// Each app's subscriptions fall into groups that never share an email address, so each group's
/// updates form an order of their own and the groups can be sent at once.
const GROUPS_PER_APP: usize = 4;
const EMAILS_PER_GROUP: usize = 3;

/// A subscription as the model (and the database) hold it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    app: Uuid,
    device_type: i32,
    identifier: Option<String>,
    language: Option<String>,
    timezone: Option<i32>,
    lat: Option<f64>,
    long: Option<f64>,
    country: Option<String>,
    external_user_id: Option<String>,
    tags: BTreeMap<String, String>,
    parent: Option<Uuid>,
}

impl Row {
    fn new(app: Uuid, device_type: i32, identifier: Option<String>) -> Row {
        Row {
            app,
            device_type,
            identifier,
            language: None,
            timezone: None,
            lat: None,
            long: None,
            country: None,
            external_user_id: None,
            tags: BTreeMap::new(),
            parent: None,
        }
    }

    /// The fields and tags of an update body, as the service documents them.
    fn apply(&mut self, b: &Value) {
        let text = |k: &str| b[k].as_str().map(str::to_owned);
        self.language = text("language").or(self.language.take());
        self.timezone = b["timezone"].as_i64().map(|t| t as i32).or(self.timezone);
        self.lat = b["lat"].as_f64().or(self.lat);
        self.long = b["long"].as_f64().or(self.long);
        self.country = text("country")
            .map(|c| c.to_uppercase())
            .or(self.country.take());
        self.external_user_id = text("external_user_id").or(self.external_user_id.take());
        for (k, v) in b["tags"].as_object().into_iter().flatten() {
            match v.as_str().filter(|v| !v.is_empty()) {
                Some(v) => self.tags.insert(k.clone(), v.to_owned()),
                None => self.tags.remove(k),
            };
        }
    }
}

/// The updates applied in order: fields to the subscription; `email` detaches it from its old
/// parent and links it to the address's email subscription (created on first link); then the
/// update is mirrored to the parent it is linked to.
#[derive(Debug, Default)]
struct Model {
    rows: HashMap<Uuid, Row>,
}

impl Model {
    fn update(&mut self, id: Uuid, body: &Value) {
        let row = self.rows.get_mut(&id).expect("updates go to created rows");
        row.apply(body);
        let app = row.app;
        if let Some(email) = body["email"].as_str() {
            let email = email.to_lowercase();
            let parent = email_parent_id(app, &email);
            row.parent = Some(parent);
            self.rows
                .entry(parent)
                .or_insert_with(|| Row::new(app, 11, Some(email)));
        }
        if let Some(parent) = self.rows[&id].parent {
            self.rows.get_mut(&parent).unwrap().apply(body);
        }
    }
}

fn random_update(rng: &mut StdRng, app: Uuid, emails: &[String]) -> Value {
    let mut b = Map::new();
    b.insert("app_id".into(), json!(app));
    if rng.gen_bool(0.4) {
        b.insert(
            "language".into(),
            json!(["en", "fr", "de", "es", "pt-BR"][rng.gen_range(0..5)]),
        );
    }
    if rng.gen_bool(0.3) {
        b.insert("timezone".into(), json!(rng.gen_range(-48..=56) * 900));
    }
    if rng.gen_bool(0.3) {
        b.insert(
            "lat".into(),
            json!(rng.gen_range(-900_000..=900_000) as f64 / 10_000.0),
        );
        b.insert(
            "long".into(),
            json!(rng.gen_range(-1_800_000..=1_800_000) as f64 / 10_000.0),
        );
    }
    if rng.gen_bool(0.2) {
        b.insert(
            "country".into(),
            json!(["us", "FR", "de", "JP", "br"][rng.gen_range(0..5)]),
        );
    }
    if rng.gen_bool(0.1) {
        b.insert(
            "external_user_id".into(),
            json!(format!("user-{}", rng.gen_range(0..100))),
        );
    }
    if rng.gen_bool(0.6) {
        let tags: Map<String, Value> = (0..rng.gen_range(1..=3))
            .map(|_| {
                let value = match rng.gen_range(0..10) {
                    0 => Value::Null,
                    1 => json!(""),
                    n => json!(format!("v{n}-{}", rng.gen_range(0..50))),
                };
                (format!("k{}", rng.gen_range(0..8)), value)
            })
            .collect();
        b.insert("tags".into(), Value::Object(tags));
    }
    if rng.gen_bool(0.06) {
        let email = &emails[rng.gen_range(0..emails.len())];
        let shown = if rng.gen_bool(0.5) {
            email.to_uppercase()
        } else {
            email.clone()
        };
        b.insert("email".into(), json!(shown));
    }
    Value::Object(b)
}

/// Every row of `apps` as stored.
async fn stored(rig: &Rig, apps: &[Uuid]) -> HashMap<Uuid, Row> {
    let db = rig.database.connect().await.expect("database");
    let sql = "SELECT p.id, p.app_id, p.device_type, p.identifier, p.language, p.timezone, p.lat, \
               p.long, p.country, p.tags, p.external_user_id, \
               (SELECT l.parent_id FROM links l WHERE l.child_id = p.id \
                 ORDER BY l.source_offset DESC LIMIT 1) \
               FROM players p WHERE p.app_id = ANY($1)";
    let rows = db.query(sql, &[&apps]).await.expect("query");
    rows.iter()
        .map(|r| {
            let tags: Value = r.get(9);
            let row = Row {
                app: r.get(1),
                device_type: r.get(2),
                identifier: r.get(3),
                language: r.get(4),
                timezone: r.get(5),
                lat: r.get(6),
                long: r.get(7),
                country: r.get(8),
                external_user_id: r.get(10),
                tags: serde_json::from_value(tags).unwrap(),
                parent: r.get(11),
            };
            (r.get(0), row)
        })
        .collect()
}

fn differences(model: &HashMap<Uuid, Row>, db: &HashMap<Uuid, Row>) -> Vec<String> {
    let ids: BTreeSet<&Uuid> = model.keys().chain(db.keys()).collect();
    ids.into_iter()
        .filter(|id| model.get(id) != db.get(id))
        .map(|id| {
            format!(
                "{id}:\n  model {:?}\n  db    {:?}",
                model.get(id),
                db.get(id)
            )
        })
        .collect()
}

async fn run(restart: bool) {
    let rig = Rig::new(if restart { "e2e-restart" } else { "e2e" }, 4).await;
    let api = Running::start(&rig.config, Roles::API).await;
    let mut consumer = Running::start(&rig.config, Roles::CONSUMER).await;
    let c = api.client();
    let seed: u64 = rand::thread_rng().gen();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = std::time::Instant::now();

    let mut model = Model::default();
    let mut apps = Vec::new();
    let mut players: Vec<Vec<Uuid>> = Vec::new();
    for a in 0..APPS {
        let app = c.create_app(&format!("app-{a}")).await;
        let mut ids = Vec::new();
        for p in (0..PLAYERS).filter(|p| p % APPS == a) {
            let device_type = [0, 1, 5, 14][p % 4];
            let id = c
                .create_player(&app, json!({"app_id": app.id, "device_type": device_type, "identifier": format!("device-{p}")}))
                .await;
            model.rows.insert(
                id,
                Row::new(app.id, device_type, Some(format!("device-{p}"))),
            );
            ids.push(id);
        }
        apps.push(app);
        players.push(ids);
    }
    // The updates, in the order each group will send them.
    let mut plans: Vec<(App, Vec<(Uuid, Value)>)> = apps
        .iter()
        .flat_map(|app| (0..GROUPS_PER_APP).map(|_| (app.clone(), Vec::new())))
        .collect();
    for _ in 0..UPDATES {
        let a = rng.gen_range(0..APPS);
        let p = rng.gen_range(0..players[a].len());
        let g = p % GROUPS_PER_APP;
        let emails: Vec<String> = (0..EMAILS_PER_GROUP)
            .map(|e| format!("user{g}-{e}@app{a}.example.com"))
            .collect();
        let id = players[a][p];
        let body = random_update(&mut rng, apps[a].id, &emails);
        model.update(id, &body);
        plans[a * GROUPS_PER_APP + g].1.push((id, body));
    }
    eprintln!("{:?}: created, sending updates", started.elapsed());

    let sent = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = plans
        .into_iter()
        .map(|(app, plan)| {
            let (c, sent) = (c.clone(), sent.clone());
            tokio::spawn(async move {
                for (id, body) in plan {
                    c.update(&app, id, &body).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    if restart {
        eventually("half the updates sent", WITHIN * 3, || async {
            (sent.load(Ordering::Relaxed) >= UPDATES / 2).then_some(())
        })
        .await;
        consumer.stop().await;
        consumer = Running::start(&rig.config, Roles::CONSUMER).await;
    }
    for s in senders {
        s.await.expect("sender");
    }
    eprintln!("{:?}: sent", started.elapsed());
    let app_ids: Vec<Uuid> = apps.iter().map(|a| a.id).collect();
    let converged = tokio::time::timeout(WITHIN * 3, async {
        loop {
            if differences(&model.rows, &stored(&rig, &app_ids).await).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    if converged.is_err() {
        let diff = differences(&model.rows, &stored(&rig, &app_ids).await);
        let dead = tokio::task::block_in_place(|| dead_letters(&rig));
        let some = diff[..diff.len().min(5)].join("\n");
        panic!(
            "{} rows differ from the model (seed {seed}), e.g.:\n{some}\ndead letters: {dead:#?}",
            diff.len()
        );
    }
    eprintln!("{:?}: converged", started.elapsed());
    let parents = model.rows.values().filter(|r| r.device_type == 11).count();
    assert!(parents > 0, "the updates linked subscriptions");
    consumer.stop().await;
    api.stop().await;
}

/// Reason and error of the first dead letters, to explain a failure.
fn dead_letters(rig: &Rig) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let c: BaseConsumer = rig
        .broker
        .group_config(&kafkaesque_testkit::unique_name("dlq"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[&rig.dead_letter_topic()]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while out.len() < 5 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let hs: Vec<String> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .filter(|h| h.key.contains("reason") || h.key.contains("error"))
                        .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            out.push(hs.join(" / "));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_state_equals_the_model() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_state_equals_the_model_across_a_consumer_restart() {
    run(true).await;
}
