SELECT app_id, child_id, parent_id FROM links
