-- The `seq` tag of every subscription of one app that has one.
SELECT (tags->>'seq')::bigint FROM players WHERE app_id = $1 AND tags ? 'seq'
