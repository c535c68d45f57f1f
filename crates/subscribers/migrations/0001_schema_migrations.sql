-- Bookkeeping for the numbered migrations in this folder: one row per migration applied.
-- The runner (src/migrations.rs) applies each missing migration in its own transaction and adds
-- its row in that same transaction, so a migration is either wholly applied and recorded or not
-- at all.
CREATE TABLE schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
