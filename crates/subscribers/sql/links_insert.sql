INSERT INTO links (parent_id, child_id, source_offset)
SELECT $1, child, o FROM unnest($2::uuid[], $3::bigint[]) AS t (child, o)
ON CONFLICT (parent_id, child_id) DO UPDATE SET source_offset = EXCLUDED.source_offset
