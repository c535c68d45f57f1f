INSERT INTO rejected_updates (app_id, player_id, source_offset) VALUES ($1, $2, $3)
ON CONFLICT (app_id, player_id) DO UPDATE
   SET source_offset = GREATEST(rejected_updates.source_offset, EXCLUDED.source_offset),
       rejected_at = now()
