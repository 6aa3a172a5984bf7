-- The work and retry queues each scheduler has declared. Queue arguments are part of the
-- queue names (the broker refuses to redeclare a queue with other arguments), so a changed
-- KILN_DELIVERY_LIMIT or KILN_RETRY_DELAYS declares new queues; the scheduler drains and
-- deletes the ones listed here that the current topology no longer declares.
CREATE TABLE broker_queues (
    name text PRIMARY KEY,
    role text NOT NULL CHECK (role IN ('work', 'delay')),
    declared_at timestamptz NOT NULL DEFAULT now()
);
