-- When a scheduler last declared each queue: with several schedulers whose configuration
-- differs during a rolling change, a queue is retired only once none has declared it for
-- KILN_RETIRE_AFTER, so no scheduler retires another's live queues.
ALTER TABLE broker_queues ADD COLUMN last_declared_at timestamptz NOT NULL DEFAULT now();
