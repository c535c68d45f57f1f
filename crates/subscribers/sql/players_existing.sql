SELECT id FROM players WHERE app_id = $1 AND id = ANY($2)
