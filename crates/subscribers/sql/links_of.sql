SELECT child_id FROM links WHERE app_id = $1 AND parent_id = $2 AND child_id = ANY($3)
