-- Per-queue activity, one row per queue per minute, for the dashboard's charts over the last
-- hour and day. Written by the schedulers (the primary key makes several of them write a minute
-- once) and pruned after a week.
CREATE TABLE stats_samples (
    at               timestamptz NOT NULL,
    queue            text NOT NULL,
    ready            integer,
    consumers        integer,
    in_flight        integer NOT NULL,
    enqueued         integer NOT NULL,
    succeeded        integer NOT NULL,
    dead             integer NOT NULL,
    duration_p50_ms  double precision,
    duration_p95_ms  double precision,
    wait_p50_ms      double precision,
    wait_p95_ms      double precision,
    PRIMARY KEY (at, queue)
);

-- Activity windows read jobs by when they were created and finished.
CREATE INDEX jobs_created_at_idx ON jobs (created_at);
CREATE INDEX jobs_finished_at_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Dashboard logins: a session made from an admin key. Only a hash of the cookie's value is
-- stored; the CSRF token travels in the page and must come back on every change.
CREATE TABLE admin_sessions (
    id_hash     bytea PRIMARY KEY,
    api_key_id  uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
