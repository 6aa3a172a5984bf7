-- Key life-cycle: a revocation may be set in the future (a rotation's overlap), so a key is
-- active while revoked_at is NULL or still ahead; last_used_at is written at most once a
-- minute per key, when the API looks the key up in Postgres (not on cached requests).
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
-- The key a rotation replaced this one with.
ALTER TABLE api_keys ADD COLUMN replaced_by uuid REFERENCES api_keys (id) ON DELETE SET NULL;
