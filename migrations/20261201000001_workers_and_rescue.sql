-- Nothing is stranded: the scheduler's rescuer republishes live jobs whose message is gone. To
-- tell a lost job from one that is merely waiting or running, workers heartbeat here and a
-- running job names the worker that holds it.
CREATE TABLE workers (
    -- Made by the worker process when it starts; a restarted process is a new worker.
    id            uuid PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    -- The queues it consumes (names without the namespace: media, email, ...).
    queues        text[] NOT NULL,
    -- Deliveries it holds that wait for a free slot, per queue ({"media": 3}), as of its last
    -- heartbeat: the rescuer allows for them when it compares a queue's depth with the jobs
    -- that should have a message in it.
    waiting       jsonb NOT NULL DEFAULT '{}',
    -- The jobs it runs now, as of its last heartbeat. A job counts as held by its worker while
    -- that worker is alive and lists it (or started it too recently for a heartbeat to list
    -- it): an attempt that ended without its outcome recorded is then never mistaken for one
    -- still running.
    running       uuid[] NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT now(),
    -- Written every few seconds (Postgres' clock, like every time the rescuer compares).
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when it exits gracefully: whatever it still held is abandoned at once.
    stopped_at    timestamptz
);

-- None of these is indexed, on purpose: a start writes `worker_id` and a failure `retry_at`,
-- and an index on either would make those updates non-HOT (see `hot_job_updates`). The
-- rescuer finds its rows through `jobs_live_idx`, which holds only live jobs.
ALTER TABLE jobs
    -- The worker running (or that last ran) the current attempt. No foreign key: workers rows
    -- are pruned long before the jobs that name them, and a check on every start costs a probe.
    ADD COLUMN worker_id uuid,
    -- When a failed job's retry message is due back in its work queue.
    ADD COLUMN retry_at timestamptz,
    -- When the rescuer last republished the job: at most once per KILN_RESCUE_AFTER. Apart
    -- from `run_after`, which is the outbox relay's lease.
    ADD COLUMN rescued_at timestamptz;
