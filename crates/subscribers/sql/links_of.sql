SELECT child_id FROM links WHERE parent_id = $1 AND child_id = ANY($2)
