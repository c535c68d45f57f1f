-- The row a delivery writes, locked for the transaction. The engine never runs two deliveries
-- of one row at once; the lock only guards against a zombie handler after a rebalance.
SELECT app_id, device_type, identifier, language, timezone, lat, long, country, tags,
       external_user_id, linked_children, source_offset, device
  FROM players
 WHERE id = $1
   FOR UPDATE
