-- One subscription as `GET /api/v1/players/{id}` shows it; a child's parent is its newest link.
SELECT p.id, p.app_id, p.device_type, p.identifier, p.language, p.timezone, p.lat, p.long,
       p.country, p.tags, p.external_user_id,
       (SELECT l.parent_id FROM links l
         WHERE l.app_id = p.app_id AND l.child_id = p.id
         ORDER BY l.source_offset DESC
         LIMIT 1) AS parent_player_id,
       extract(epoch FROM p.created_at)::bigint AS created_at,
       extract(epoch FROM p.updated_at)::bigint AS updated_at
  FROM players p
 WHERE p.id = $1 AND p.app_id = $2
