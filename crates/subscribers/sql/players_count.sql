SELECT count(*) FROM players WHERE app_id = $1
