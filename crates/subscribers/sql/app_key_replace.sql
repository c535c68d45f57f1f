UPDATE apps SET api_key_hash = $2, key_changed_at = now() WHERE id = $1
