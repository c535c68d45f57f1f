INSERT INTO apps (id, name, api_key_hash) VALUES ($1, $2, $3)
