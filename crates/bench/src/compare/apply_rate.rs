//! The PostgreSQL apply rate: updates applied per second by the service's consumer (router,
//! per-row queues, the applier's replay-safe transaction) vs a plain single-row `UPDATE` loop on
//! the same rows of the same database with as many connections as the service's pool. Target
//! ≥ 1×: the service's bookkeeping should cost less than its concurrency gains.

use std::time::Instant;

use anyhow::Result;
use futures::stream::{self, StreamExt};
use kafkaesque_runtime::Record;
use kafkaesque_subscribers::apply::Applier;
use kafkaesque_subscribers::busiest::Busiest;
use kafkaesque_subscribers::message::Update;
use kafkaesque_subscribers::routing::LinkCache;
use kafkaesque_subscribers::skip::SkipList;
use kafkaesque_subscribers::{consumer, db};

use super::kafka::timed;
use crate::load::target::{split, DirectTarget};
use crate::load::traffic::{Scenario, Traffic};
use crate::report::Figure;
use crate::rig::{Rig, ServiceEnv};

const C: &str = "PostgreSQL apply rate";

/// `updates` updates over `rows` rows per run, `reps` interleaved runs of each.
///
/// # Errors
/// When the set-up fails or a run does not finish in time.
pub async fn run(rig: &Rig, rows: usize, updates: usize, reps: usize) -> Result<Vec<Figure>> {
    let env = rig.service_env("bench-apply", 8).await?;
    let (target, apps, _) = DirectTarget::setup(&env.config, &split(10, rows, false)).await?;
    // The creates first, applied by the service, so that every later run only updates.
    consume(&env, rows).await?;
    let mut traffic = Traffic::new(Scenario::Uniform, apps, 0.0, 9);
    let (mut service, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let batch: Vec<Update> = (0..updates).map(|_| traffic.next_update().update).collect();
        stream::iter(batch.clone())
            .map(|update| {
                target.send(crate::load::traffic::Planned {
                    app: 0,
                    flood: false,
                    update,
                })
            })
            .buffer_unordered(1_024)
            .collect::<Vec<_>>()
            .await;
        service.push(consume(&env, updates).await?);
        plain.push(update_loop(&env, &batch).await?);
    }
    let plain = Figure::new(C, "plain UPDATE loop", "updates/s", plain).note(format!(
        "{updates} single-row UPDATEs over {rows} rows per run, {} connections, autocommit",
        env.config.pool_size
    ));
    let service = Figure::new(C, "service consumer", "updates/s", service)
        .vs(&plain)
        .at_least("≥ 1× plain", 1.0)
        .note("from the first handler call to the last update applied; pool of the same size");
    Ok(vec![plain, service])
}

/// Runs the service's consumer (its group continues where the last run committed) until it has
/// applied `records` records; returns records per second from its first handler call.
async fn consume(env: &ServiceEnv, records: usize) -> Result<f64> {
    let store = env.store()?;
    let skips = SkipList::default();
    let links = LinkCache::default();
    let consumer =
        consumer::builder(&env.config, &store, &skips, &Busiest::default(), &links).build()?;
    let applier = Applier::new(store, skips, env.config.link_limit).with_links(links);
    timed(consumer, records, move |record: Record| {
        let applier = applier.clone();
        async move {
            let n = record.coalesced();
            applier.handle(record).await?;
            Ok(n)
        }
    })
    .await
    .map(|run| run.rate)
}

/// The same updates as plain single-row `UPDATE`s, spread over as many connections as the
/// service's pool has, each in its own implicit transaction, each connected as the service's
/// are (TLS where its `sslmode` asks for it).
async fn update_loop(env: &ServiceEnv, batch: &[Update]) -> Result<f64> {
    let connections = env.config.pool_size.max(1);
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(db::connect(&env.config.database, &env.config.database_tls).await?);
    }
    let sql = "UPDATE players SET language = $2, timezone = $3, tags = tags || $4::jsonb, \
               updated_at = now() WHERE id = $1";
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let mine: Vec<Update> = batch.iter().skip(i).step_by(connections).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let statement = client.prepare(sql).await?;
            for u in mine {
                let tags = serde_json::to_value(&u.tags).expect("tags serialize");
                client
                    .execute(
                        &statement,
                        &[&u.player_id, &u.fields.language, &u.fields.timezone, &tags],
                    )
                    .await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(batch.len() as f64 / start.elapsed().as_secs_f64())
}
