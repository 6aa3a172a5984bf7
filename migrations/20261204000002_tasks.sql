-- HTTP tasks: the app's own work, sent by Kiln to the app's URL with Kiln's guarantees.
--
-- A task is a job of kind `task` (same id). Its job row is written unpublished and not due
-- (`retry_at` and `run_after` = infinity): the scheduler's dispatcher alone decides when it is
-- sent, from the task's `run_at` and its queue's limits, so a paused or throttled queue's tasks
-- wait here, never in the broker. Dispatching makes the job row due and publishes it (the outbox
-- relay sends it if that publish fails).

-- Named queues per tenant. Their limits hold across every worker and scheduler because they are
-- applied here, under the queue row's lock, and nothing about them lives in memory or Redis.
CREATE TABLE task_queues (
    tenant          text NOT NULL,
    name            text NOT NULL,
    -- Tasks sent per second at most, refilling a bucket of `burst`; NULL: no rate limit.
    rate_per_sec    double precision CHECK (rate_per_sec > 0),
    burst           integer NOT NULL DEFAULT 1 CHECK (burst > 0),
    -- Tasks sent and not yet finished at most; NULL: no limit.
    max_concurrent  integer CHECK (max_concurrent > 0),
    paused          boolean NOT NULL DEFAULT false,
    -- The rate's bucket: tokens left as of `refilled_at`.
    tokens          double precision NOT NULL DEFAULT 0,
    refilled_at     timestamptz NOT NULL DEFAULT now(),
    -- Signs this queue's requests (Standard Webhooks, like webhook deliveries).
    secret          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);

CREATE TABLE tasks (
    id              uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    tenant          text NOT NULL,
    queue           text NOT NULL,
    url             text NOT NULL,
    method          text NOT NULL,
    -- Extra request headers, {"name": "value"}; hop-by-hop and webhook-* are refused.
    headers         jsonb NOT NULL DEFAULT '{}',
    body            bytea NOT NULL DEFAULT '',
    timeout_secs    integer NOT NULL,
    -- Backoff between attempts: doubling from min to max (never before a Retry-After).
    min_backoff_ms  bigint NOT NULL,
    max_backoff_ms  bigint NOT NULL,
    -- A repeat with the same key (per tenant) returns this task instead of making another,
    -- as long as this task is kept.
    dedupe_key      text,
    -- When the next attempt may be sent.
    run_at          timestamptz NOT NULL,
    -- waiting (for run_at or its queue) → sent → succeeded | failed | cancelled;
    -- a retried task goes back to waiting.
    status          text NOT NULL DEFAULT 'waiting'
                    CHECK (status IN ('waiting', 'sent', 'succeeded', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    response_status integer,
    -- The first 1 KB of the last answer.
    response_body   text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tasks_dedupe_idx ON tasks (tenant, dedupe_key) WHERE dedupe_key IS NOT NULL;
-- The dispatcher's scan: due waiting tasks, by queue.
CREATE INDEX tasks_waiting_idx ON tasks (tenant, queue, run_at) WHERE status = 'waiting';
-- A queue's tasks in flight, for its concurrency limit.
CREATE INDEX tasks_sent_idx ON tasks (tenant, queue) WHERE status = 'sent';
