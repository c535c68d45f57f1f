SELECT child_id, parent_id FROM links
