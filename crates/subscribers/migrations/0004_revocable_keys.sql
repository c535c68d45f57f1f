-- An app's key can be rotated or revoked: a revoked app has no key (NULL matches no lookup,
-- and UNIQUE allows any number of them), and the time of the last change is kept.
ALTER TABLE apps ALTER COLUMN api_key_hash DROP NOT NULL;
ALTER TABLE apps ADD COLUMN key_changed_at timestamptz;
