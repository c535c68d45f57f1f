-- The `seq` tag of each of the given subscriptions: which update of it is visible.
SELECT id, (tags->>'seq')::bigint AS seq FROM players WHERE id = ANY($1)
