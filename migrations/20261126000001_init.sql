-- Kiln's first schema: API keys, jobs (the transactional outbox), media and their variants.
-- Statuses are text with CHECK constraints rather than Postgres enums: adding a state later is a
-- one-line constraint change instead of an ALTER TYPE that cannot run inside a transaction.

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    -- Tenancy boundary: media and jobs carry the tenant of the key that created them, and a key
    -- only ever sees rows of its own tenant. Several keys may share a tenant (key rotation).
    tenant       text NOT NULL,
    -- The first characters of the key, safe to show so operators can tell keys apart.
    prefix       text NOT NULL,
    -- SHA-256 of the whole key. Keys are 256 random bits, so a fast hash is enough: there is no
    -- low-entropy password to stretch, and lookups stay one index probe per request.
    key_hash     bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE TABLE jobs (
    id            uuid PRIMARY KEY,
    -- NULL for system jobs (cron ticks, maintenance) that belong to no tenant.
    tenant        text,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    -- queued → running → succeeded | failed (an attempt failed, a retry is due) | dead
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    last_error    text,
    -- Makes an enqueue idempotent: cron ticks use "<schedule>@<tick time>".
    dedupe_key    text UNIQUE,
    run_after     timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Set once the broker confirmed the message; rows left NULL are republished by the relay.
    published_at  timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz
);

-- The outbox relay scans only unpublished rows; a partial index keeps that scan tiny.
CREATE INDEX jobs_unpublished_idx ON jobs (created_at) WHERE published_at IS NULL;
CREATE INDEX jobs_status_kind_idx ON jobs (status, kind, created_at);

CREATE TABLE media (
    id            uuid PRIMARY KEY,
    tenant        text NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    -- Sniffed from the bytes, never taken from the client's Content-Type.
    content_type  text NOT NULL,
    bytes         bigint NOT NULL,
    sha256        text NOT NULL,
    -- From the image header at upload; the worker may swap them after EXIF rotation.
    width         integer NOT NULL,
    height        integer NOT NULL,
    -- Where the original lives in storage; generated, never the client's file name.
    original_key  text NOT NULL,
    error         text,
    job_id        uuid REFERENCES jobs (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX media_tenant_idx ON media (tenant, created_at);

CREATE TABLE media_variants (
    media_id     uuid NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    name         text NOT NULL,
    format       text NOT NULL CHECK (format IN ('jpeg', 'webp')),
    width        integer NOT NULL,
    height       integer NOT NULL,
    bytes        bigint NOT NULL,
    -- Deterministic (media id, name, format), so a re-run overwrites instead of duplicating.
    storage_key  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (media_id, name, format)
);
