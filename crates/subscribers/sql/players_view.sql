-- Subscriptions of app $1 as the API shows them: the one of id $2, or (with $2 NULL) a page of
-- $3 from $4 on, by id (OneSignal sorts by id too). A child's parent is its newest link.
SELECT p.id, p.app_id, p.device_type, p.identifier, p.language, p.timezone, p.lat, p.long,
       p.country, p.tags, p.external_user_id, p.device,
       (SELECT l.parent_id FROM links l
         WHERE l.app_id = p.app_id AND l.child_id = p.id
         ORDER BY l.source_offset DESC
         LIMIT 1) AS parent_player_id,
       extract(epoch FROM p.created_at)::bigint AS created_at,
       extract(epoch FROM p.updated_at)::bigint AS updated_at
  FROM players p
 WHERE p.app_id = $1 AND ($2::uuid IS NULL OR p.id = $2)
 ORDER BY p.id
 LIMIT $3 OFFSET $4
