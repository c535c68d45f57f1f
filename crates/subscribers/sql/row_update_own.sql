-- An update of the row itself in one autocommit statement: the change and the new offset are
-- written together, and only while the row exists in the app and is below the first offset the
-- delivery carries (the replay rule). The row lock it takes, and READ COMMITTED's re-check of the
-- WHERE clause after a wait, keep a zombie handler's write from being overtaken or undone. No row
-- back means nothing changed: the caller then plans the delivery in a transaction, which tells a
-- replay from an unknown row.
UPDATE players
   SET language = COALESCE($3, language),
       timezone = COALESCE($4, timezone),
       lat = COALESCE($5, lat),
       long = COALESCE($6, long),
       country = COALESCE($7, country),
       external_user_id = COALESCE($8, external_user_id),
       tags = (tags || $9::jsonb) - $10::text[],
       source_offset = $12,
       updated_at = now()
 WHERE id = $1
   AND app_id = $2
   AND source_offset < $11
RETURNING app_id, device_type, identifier, language, timezone, lat, long, country, tags,
          external_user_id, linked_children, source_offset
