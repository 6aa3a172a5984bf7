-- Webhooks: a tenant's endpoints, and one delivery row per event sent to one endpoint.
--
-- A delivery is a job like any other (kind `webhook`, same id): rescued, retried, retained and
-- pruned with its job. The row here is its log for the tenant: what was sent, and what the
-- endpoint answered last.
CREATE TABLE webhook_endpoints (
    id                    uuid PRIMARY KEY,
    tenant                text NOT NULL,
    url                   text NOT NULL,
    -- Event types it receives (`media.ready`, ...), or `*` for every type its tenant may see.
    events                text[] NOT NULL,
    description           text NOT NULL DEFAULT '',
    enabled               boolean NOT NULL DEFAULT true,
    -- Created with an admin key: may also receive the operators' events (`backup.*`).
    admin                 boolean NOT NULL DEFAULT false,
    -- `whsec_` + base64 of random bytes. Kept in clear: signing needs it (HMAC), like every
    -- Standard Webhooks sender; protect the database and its backups accordingly.
    secret                text NOT NULL,
    -- The secret before the last rotation, still signing (beside the new one) until then.
    previous_secret       text,
    previous_secret_until timestamptz,
    -- Why it was disabled by Kiln (410 Gone, failing for too long); NULL when by its tenant.
    disabled_reason       text,
    -- When its current run of failed attempts began; NULL after a success.
    failing_since         timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant, created_at);

CREATE TABLE webhook_deliveries (
    -- The job's id; `webhook-id` is `msg_` + its hex, the same on every attempt and replay.
    id              uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant          text NOT NULL,
    event_type      text NOT NULL,
    -- The exact body sent: the same bytes are signed on every attempt.
    body            text NOT NULL,
    -- pending (not yet answered, or retrying) → succeeded | failed (for good)
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- What the last attempt got: the status code (NULL when none came: refused, timed out),
    -- the first 1 KB of the answer, how long it took, and what went wrong.
    response_status integer,
    response_body   text,
    latency_ms      integer,
    last_error      text,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_failed_idx ON webhook_deliveries (endpoint_id, created_at)
    WHERE status = 'failed';

-- Retries kept in Postgres (and tasks waiting for their queue) stay unpublished until due: the
-- relay finds the due ones by `run_after`. Neither column is written by a start or a recorded
-- failure of a broker-retried job, so those updates stay HOT.
CREATE INDEX jobs_unpublished_due_idx ON jobs (run_after) WHERE published_at IS NULL;
