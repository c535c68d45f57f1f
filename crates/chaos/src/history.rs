//! Every write the consumers committed to a subscription row, in commit order.
//!
//! Why a trigger and not polling: "the applied sequence never went backwards" must be checked,
//! not assumed. A poller sees the row now and then and would miss a write that set `seq` back and
//! the next one that set it forward again. The trigger (`sql/history.sql`, installed in the run's
//! own database, never the service's schema) records every committed write inside the writing
//! transaction, so the history is complete and in the order the row's writes committed.

use std::collections::HashMap;

use uuid::Uuid;

use crate::Result;

const SCHEMA: &str = include_str!("../sql/history.sql");

/// Installs the history table and trigger; the service's migrations must have run.
pub async fn install(db: &tokio_postgres::Client) -> Result<()> {
    db.batch_execute(SCHEMA).await?;
    Ok(())
}

/// One committed write of a row: the `seq` tag it left and when it committed (milliseconds since
/// the Unix epoch, by PostgreSQL's clock, which is this machine's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    pub seq: i64,
    pub at_ms: i64,
}

/// Every row's writes, oldest first.
pub async fn read(db: &tokio_postgres::Client) -> Result<HashMap<Uuid, Vec<Write>>> {
    let rows = db
        .query(
            "SELECT player_id, coalesce(seq, -1),
                    (extract(epoch FROM at) * 1000)::bigint
             FROM chaos_history ORDER BY n",
            &[],
        )
        .await?;
    let mut writes: HashMap<Uuid, Vec<Write>> = HashMap::new();
    for r in rows {
        writes.entry(r.get(0)).or_default().push(Write {
            seq: r.get(1),
            at_ms: r.get(2),
        });
    }
    Ok(writes)
}
