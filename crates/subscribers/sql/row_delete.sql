-- Deletes the row ($1, of app $2) and leaves its tombstone at the delete's offset ($3).
WITH gone AS (DELETE FROM players WHERE id = $1 AND app_id = $2)
INSERT INTO deleted_players (id, app_id, source_offset) VALUES ($1, $2, $3)
ON CONFLICT (id) DO NOTHING
