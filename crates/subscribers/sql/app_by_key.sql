SELECT id FROM apps WHERE api_key_hash = $1
