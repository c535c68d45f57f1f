SELECT player_id, source_offset FROM rejected_updates WHERE app_id = $1 AND player_id = ANY($2)
