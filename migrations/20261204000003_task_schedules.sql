-- Recurring tasks: a tenant's cron schedules, each making one task per tick. A tick is fired
-- once however many schedulers run: the row is taken with FOR UPDATE SKIP LOCKED, and the task
-- it makes carries the dedupe key `schedule:<id>@<tick>`.
CREATE TABLE task_schedules (
    id          uuid PRIMARY KEY,
    tenant      text NOT NULL,
    name        text NOT NULL,
    -- Five fields (minute hour day month weekday), UTC: at most once a minute.
    cron        text NOT NULL,
    -- The task each tick makes, checked when the schedule was made.
    task        jsonb NOT NULL,
    next_tick   timestamptz NOT NULL,
    last_tick   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);
CREATE INDEX task_schedules_due_idx ON task_schedules (next_tick);
