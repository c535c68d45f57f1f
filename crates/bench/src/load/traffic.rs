//! What the load generator sends: the `uniform` and `incident` scenarios, reproducible from a
//! seed.
//!
//! The incident is the production one this project comes from (docs/benchmarks.md): one app
//! links most of its subscriptions to one email address — every update of those children is
//! mirrored onto that one parent row — and then keeps updating all of them with contradictory
//! values (Chicago, then NYC, then Tokyo), while the other apps send ordinary traffic.

use std::collections::BTreeMap;

use kafkaesque_subscribers::message::{email_parent_id, Fields, Update};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use uuid::Uuid;

/// Which traffic to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Many apps, many subscriptions, updates spread evenly over all of them.
    Uniform,
    /// The first app links most of its subscriptions to one email address and floods them with
    /// contradictory updates; the other apps send uniform traffic.
    Incident,
    /// One app floods the HTTP edge at ten times its rate limit and a stranger floods it with
    /// bad keys, while five apps send 50 updates/s each: quiet and flooded phases in turn
    /// (see [`crate::load::abuse`]).
    Abuse,
}

/// The email address the flooding app links its subscriptions to.
pub const FLOOD_EMAIL: &str = "admin@flood.example.com";

/// Share of the flooding app's subscriptions linked to the one address: 4.8 of 5 million in the
/// legacy system's incident.
const LINKED_SHARE: f64 = 0.96;

/// Cities the flood cycles through: contradictory updates, each undoing the one before.
const CITIES: [(&str, f64, f64); 4] = [
    ("Chicago", 41.9, -87.6),
    ("NYC", 40.7, -74.0),
    ("Tokyo", 35.7, 139.7),
    ("Paris", 48.9, 2.35),
];

/// One app of the traffic and its subscriptions.
#[derive(Debug, Clone)]
pub struct App {
    pub id: Uuid,
    pub players: Vec<Uuid>,
}

/// One update to send, and whether it is the flooding app's.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Index of the app in [`Traffic::apps`].
    pub app: usize,
    pub flood: bool,
    pub update: Update,
}

/// An endless, seeded sequence of updates over a fixed set of apps and subscriptions.
#[derive(Debug)]
pub struct Traffic {
    apps: Vec<App>,
    scenario: Scenario,
    /// Share of all updates that are the flooding app's (incident only).
    flood_share: f64,
    /// The flooding app's next subscription, round-robin: its first round links them.
    flood_cursor: usize,
    rng: StdRng,
    sent: u64,
}

impl Traffic {
    /// Traffic over `apps`; with [`Scenario::Incident`] the first app floods and sends
    /// `flood_share` of all updates.
    pub fn new(scenario: Scenario, apps: Vec<App>, flood_share: f64, seed: u64) -> Self {
        assert!(!apps.is_empty(), "traffic needs at least one app");
        Traffic {
            apps,
            scenario,
            flood_share,
            flood_cursor: 0,
            rng: StdRng::seed_from_u64(seed),
            sent: 0,
        }
    }

    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    /// The flooding app, in the incident.
    pub fn flood_app(&self) -> Option<Uuid> {
        (self.scenario == Scenario::Incident).then(|| self.apps[0].id)
    }

    /// The parent row every linked subscription of the flooding app mirrors onto.
    pub fn hot_parent(&self) -> Option<Uuid> {
        self.flood_app()
            .map(|app| email_parent_id(app, FLOOD_EMAIL))
    }

    /// The flooding app's first round, at once: every subscription updated once, most of them
    /// linked to [`FLOOD_EMAIL`] — the set-up of the incident, before the flood proper.
    pub fn link_round(&mut self) -> Vec<Planned> {
        if self.scenario != Scenario::Incident {
            return Vec::new();
        }
        let n = self.apps[0].players.len().saturating_sub(self.flood_cursor);
        (0..n).map(|_| self.flood()).collect()
    }

    /// The next update.
    pub fn next_update(&mut self) -> Planned {
        self.sent += 1;
        let flooding = self.scenario == Scenario::Incident
            && (self.apps.len() == 1 || self.rng.gen_bool(self.flood_share));
        if flooding {
            self.flood()
        } else {
            self.ordinary()
        }
    }

    fn flood(&mut self) -> Planned {
        let players = &self.apps[0].players;
        let i = self.flood_cursor % players.len();
        let round = self.flood_cursor / players.len();
        self.flood_cursor += 1;
        let (city, lat, long) = CITIES[(i + round) % CITIES.len()];
        let linked = (i as f64) < players.len() as f64 * LINKED_SHARE;
        let update = Update {
            player_id: players[i],
            app_id: self.apps[0].id,
            fields: Fields {
                lat: Some(lat),
                long: Some(long),
                ..Fields::default()
            },
            tags: BTreeMap::from([("city".to_owned(), Some(city.to_owned()))]),
            email: (round == 0 && linked).then(|| FLOOD_EMAIL.to_owned()),
            parent_player_id: None,
        };
        Planned {
            app: 0,
            flood: true,
            update,
        }
    }

    fn ordinary(&mut self) -> Planned {
        let first = usize::from(self.scenario == Scenario::Incident);
        let app = self.rng.gen_range(first..self.apps.len());
        let players = &self.apps[app].players;
        let player = players[self.rng.gen_range(0..players.len())];
        let plan = ["free", "pro", "vip"][self.rng.gen_range(0..3)];
        let update = Update {
            player_id: player,
            app_id: self.apps[app].id,
            fields: Fields {
                language: Some(["en", "de", "ja", "es"][self.rng.gen_range(0..4)].to_owned()),
                timezone: Some(self.rng.gen_range(-12..=14) * 3600),
                ..Fields::default()
            },
            tags: BTreeMap::from([
                ("plan".to_owned(), Some(plan.to_owned())),
                ("n".to_owned(), Some(self.sent.to_string())),
            ]),
            email: None,
            parent_player_id: None,
        };
        Planned {
            app,
            flood: false,
            update,
        }
    }
}

/// The body of `PUT /api/v1/players/{id}` for `update`: the message without the id.
pub fn http_body(update: &Update) -> serde_json::Value {
    let mut body = serde_json::to_value(update).expect("an update always serializes");
    if let Some(map) = body.as_object_mut() {
        map.remove("player_id");
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some_apps(n: usize, players: usize) -> Vec<App> {
        (0..n)
            .map(|_| App {
                id: Uuid::new_v4(),
                players: (0..players).map(|_| Uuid::new_v4()).collect(),
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let apps = some_apps(3, 10);
        let mut a = Traffic::new(Scenario::Uniform, apps.clone(), 0.0, 7);
        let mut b = Traffic::new(Scenario::Uniform, apps, 0.0, 7);
        for _ in 0..100 {
            assert_eq!(a.next_update().update, b.next_update().update);
        }
    }

    #[test]
    fn the_flood_links_most_children_once_then_contradicts_itself() {
        let apps = some_apps(3, 100);
        let flood_app = apps[0].id;
        let mut t = Traffic::new(Scenario::Incident, apps, 0.5, 1);
        let planned: Vec<Planned> = (0..2_000).map(|_| t.next_update()).collect();
        let flood: Vec<&Planned> = planned.iter().filter(|p| p.flood).collect();
        assert!(flood.iter().all(|p| p.update.app_id == flood_app));
        assert!(planned
            .iter()
            .filter(|p| !p.flood)
            .all(|p| p.update.app_id != flood_app));
        let share = flood.len() as f64 / planned.len() as f64;
        assert!((0.4..0.6).contains(&share), "flood share {share}");
        let linking = flood.iter().filter(|p| p.update.email.is_some()).count();
        assert_eq!(linking, 96, "96 of 100 children linked, each once");
        let first = &flood[0].update;
        let again = &flood[100].update;
        assert_eq!(first.player_id, again.player_id);
        assert_ne!(
            first.tags, again.tags,
            "a later round contradicts the first"
        );

        let mut t = Traffic::new(Scenario::Incident, some_apps(2, 50), 0.5, 1);
        let round = t.link_round();
        assert_eq!(round.len(), 50);
        assert_eq!(
            round.iter().filter(|p| p.update.email.is_some()).count(),
            48
        );
        assert!((0..100).all(|_| t.next_update().update.email.is_none()));
    }

    #[test]
    fn the_http_body_is_the_message_without_its_id() {
        let mut t = Traffic::new(Scenario::Incident, some_apps(2, 5), 1.0, 3);
        let p = t.next_update();
        let body = http_body(&p.update);
        assert!(body.get("player_id").is_none());
        assert_eq!(body["email"], FLOOD_EMAIL);
        assert_eq!(body["app_id"], p.update.app_id.to_string());
    }
}
