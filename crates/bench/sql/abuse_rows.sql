-- Subscriptions of the given apps that exist: the abuse run waits for its set-up to be applied.
SELECT count(*) FROM players WHERE app_id = ANY($1)
