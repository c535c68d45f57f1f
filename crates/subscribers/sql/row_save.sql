INSERT INTO players (id, app_id, device_type, identifier, language, timezone, lat, long, country,
                     tags, external_user_id, linked_children, source_offset, device)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (id) DO UPDATE
   SET language = EXCLUDED.language,
       timezone = EXCLUDED.timezone,
       lat = EXCLUDED.lat,
       long = EXCLUDED.long,
       country = EXCLUDED.country,
       tags = EXCLUDED.tags,
       external_user_id = EXCLUDED.external_user_id,
       linked_children = EXCLUDED.linked_children,
       source_offset = EXCLUDED.source_offset,
       device = EXCLUDED.device,
       updated_at = now()
