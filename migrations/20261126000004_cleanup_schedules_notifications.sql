-- Deleting media, the cron table's state, and per-key notifications.

-- DELETE /v1/media/{id} keeps the row as a tombstone (status 'deleted') so the cleanup job can
-- find the files to remove even after a crash; `purged_at` is set once they are gone.
ALTER TABLE media
    DROP CONSTRAINT media_status_check,
    ADD CONSTRAINT media_status_check
        CHECK (status IN ('pending', 'processing', 'ready', 'failed', 'deleted')),
    ADD COLUMN deleted_at timestamptz,
    ADD COLUMN purged_at timestamptz,
    -- The key that uploaded it: "media ready/failed" notifications go to that key's address.
    ADD COLUMN api_key_id uuid REFERENCES api_keys (id) ON DELETE SET NULL;

CREATE INDEX media_unpurged_idx ON media (deleted_at)
    WHERE status = 'deleted' AND purged_at IS NULL;

-- Opt-in: when set, the key's uploads send "media ready/failed" emails and its tenant gets the
-- daily digest at this address.
ALTER TABLE api_keys ADD COLUMN notify_email text;

-- One row per cron schedule, written by the schedulers: what fired last, what fires next, and
-- how many ticks were missed while no scheduler ran. The row lock also serialises catch-up, so
-- several schedulers starting together count (and fire) a missed tick once.
CREATE TABLE schedules (
    name           text PRIMARY KEY,
    cron           text NOT NULL,
    kind           text NOT NULL,
    missed_policy  text NOT NULL CHECK (missed_policy IN ('skip', 'once')),
    last_tick      timestamptz,
    next_tick      timestamptz,
    missed_ticks   bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
