-- The tombstone of a deleted row, if it has one.
SELECT app_id, source_offset FROM deleted_players WHERE id = $1
