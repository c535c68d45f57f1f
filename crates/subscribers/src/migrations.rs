//! Numbered schema migrations, applied in order on start.
//!
//! Each migration is a `.sql` file in `migrations/`, named `NNNN_name.sql` and listed in
//! [`MIGRATIONS`]. Migration 1 creates the `schema_migrations` table that records which ones a
//! database has; every later one is applied at most once, in its own transaction together with its
//! row in that table.

use tokio_postgres::Client;

use crate::{Error, Result};

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number: migrations are applied in increasing order, starting at 1, with no gaps.
    pub version: i32,
    /// What it does, as in its file name.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// All migrations, in order. A new one is a new file in `migrations/` and a new entry here; the
/// tests check that the two agree.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema_migrations",
        sql: include_str!("../migrations/0001_schema_migrations.sql"),
    },
    Migration {
        version: 2,
        name: "subscribers",
        sql: include_str!("../migrations/0002_subscribers.sql"),
    },
    Migration {
        version: 3,
        name: "links_by_app",
        sql: include_str!("../migrations/0003_links_by_app.sql"),
    },
    Migration {
        version: 4,
        name: "revocable_keys",
        sql: include_str!("../migrations/0004_revocable_keys.sql"),
    },
    Migration {
        version: 5,
        name: "players_api",
        sql: include_str!("../migrations/0005_players_api.sql"),
    },
    Migration {
        version: 6,
        name: "deleted_players",
        sql: include_str!("../migrations/0006_deleted_players.sql"),
    },
    Migration {
        version: 7,
        name: "tombstones_by_time",
        sql: include_str!("../migrations/0007_tombstones_by_time.sql"),
    },
];

/// Key of the transaction-scoped advisory lock that serialises migration runs, so that several
/// service processes starting at once apply each migration exactly once.
const MIGRATION_LOCK: i64 = 0x6b61_666b_6165_7371; // "kafkaesq"

/// Applies every migration the database does not have yet and returns their versions.
///
/// # Errors
/// [`Error::Migration`] for a migration that failed (it is rolled back; later ones are not
/// tried), [`Error::Postgres`] when the bookkeeping itself fails.
pub async fn migrate(client: &mut Client, server: &str) -> Result<Vec<i32>> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let bookkeeping = |source| Error::Postgres {
            server: server.to_owned(),
            source,
        };
        let tx = client.transaction().await.map_err(bookkeeping)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(bookkeeping)?;
        // Before migration 1 there is no table to ask.
        let has_table: bool = tx
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await
            .map_err(bookkeeping)?
            .get(0);
        let done = has_table
            && tx
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[&migration.version],
                )
                .await
                .map_err(bookkeeping)?
                .is_some();
        if done {
            continue;
        }
        let failed = |source| Error::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        applied.push(migration.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_have_no_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1, "{}", migration.name);
        }
    }

    #[test]
    fn every_file_in_the_folder_is_listed_under_its_number_and_name() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, listed);
        for (file, migration) in files.iter().zip(MIGRATIONS) {
            let on_disk = std::fs::read_to_string(folder.join(file)).unwrap();
            assert_eq!(on_disk, migration.sql, "{file}");
        }
    }
}
