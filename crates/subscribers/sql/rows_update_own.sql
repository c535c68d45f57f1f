-- Updates of rows themselves, one per element of the arrays, in one autocommit statement. Each
-- row's change and its new offset are written together, and only while the row exists in the app
-- and is below the first offset its delivery carries (the replay rule). The row locks it takes,
-- and READ COMMITTED's re-check of the WHERE clause after a wait, keep a zombie handler's write
-- from being overtaken or undone. A row not returned was not written: its delivery is then
-- planned in a transaction, which tells a replay from an unknown row. The arrays never name a
-- row twice (see apply/together.rs). An update that sets tags is written only while the row's
-- tags stay within the tag limit ($13 tags, $14 bytes of keys and values): one that would not is
-- left to the plan, which refuses it.
UPDATE players AS p
   SET language = COALESCE(u.language, p.language),
       timezone = COALESCE(u.timezone, p.timezone),
       lat = COALESCE(u.lat, p.lat),
       long = COALESCE(u.long, p.long),
       country = COALESCE(u.country, p.country),
       external_user_id = COALESCE(u.external_user_id, p.external_user_id),
       device = p.device || u.device,
       tags = (p.tags || u.set) - ARRAY(SELECT jsonb_array_elements_text(u.deleted)),
       source_offset = u.last,
       updated_at = now()
  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::integer[], $5::double precision[],
              $6::double precision[], $7::text[], $8::text[], $9::jsonb[], $10::jsonb[],
              $11::bigint[], $12::bigint[], $15::jsonb[])
       AS u (id, app_id, language, timezone, lat, long, country, external_user_id, set, deleted,
             first, last, device)
 WHERE p.id = u.id
   AND p.app_id = u.app_id
   AND p.source_offset < u.first
   AND (u.set = '{}'::jsonb
        OR (SELECT count(*) <= $13
                   AND coalesce(sum(octet_length(t.key) + octet_length(t.value)), 0) <= $14
              FROM jsonb_each_text((p.tags || u.set)
                                   - ARRAY(SELECT jsonb_array_elements_text(u.deleted))) AS t))
RETURNING p.id, p.app_id, p.device_type, p.identifier, p.language, p.timezone, p.lat, p.long,
          p.country, p.tags, p.external_user_id, p.linked_children, p.source_offset, p.device
