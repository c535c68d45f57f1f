INSERT INTO links (app_id, parent_id, child_id, source_offset)
SELECT $1, $2, child, o FROM unnest($3::uuid[], $4::bigint[]) AS t (child, o)
ON CONFLICT (parent_id, child_id) DO UPDATE SET source_offset = EXCLUDED.source_offset
 WHERE links.app_id = EXCLUDED.app_id
