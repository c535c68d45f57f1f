-- Tombstones are pruned by age once the topic can no longer hold a record they guard against
-- (see `tombstones.rs`): the pruning reads them oldest first, a batch at a time.
CREATE INDEX deleted_players_by_time ON deleted_players (deleted_at);
