-- The app's subscriptions carrying an external user id, at most $3 of them.
SELECT id FROM players WHERE app_id = $1 AND external_user_id = $2 ORDER BY id LIMIT $3
