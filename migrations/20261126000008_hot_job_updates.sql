-- Every job is written three times: inserted, started, finished. An update can be HOT (a new
-- row version on the same page, no index entries at all) only when no index covers a column
-- whose value it changes, and `status` was indexed, so each start and each finish wrote a new
-- entry into every index of the table. Now no index covers `status`, `attempts`, `started_at`
-- or `last_error`: starting an attempt is HOT, and so is a failure once the publish is
-- recorded (`published_at` is in the relay's index predicate).
--
-- What the status index answered comes from two stored flags derived from `status`. A flag
-- changes only when a job enters or leaves its set, so the partial indexes on them cost the
-- start nothing, and every process, whatever its version, keeps them right by writing `status`.
-- Adding them rewrites the table once.
ALTER TABLE jobs
    ADD COLUMN is_live boolean NOT NULL
        GENERATED ALWAYS AS (status IN ('queued', 'running', 'failed')) STORED,
    ADD COLUMN is_dead boolean NOT NULL GENERATED ALWAYS AS (status = 'dead') STORED;

-- A failed attempt no longer sets `finished_at` (the job has not finished; it waits for a
-- retry), which keeps that update off `jobs_finished_at_idx`.
UPDATE jobs SET finished_at = NULL WHERE status = 'failed' AND finished_at IS NOT NULL;

DROP INDEX jobs_status_kind_idx;
CREATE INDEX jobs_live_idx ON jobs (created_at) WHERE is_live;
CREATE INDEX jobs_dead_idx ON jobs (created_at) WHERE is_dead;
-- One index entry fewer for every row version: newest-first lists walk the primary key (job
-- ids are UUIDv7, made when the job is), and a job created in an activity window is live now
-- or finished in that window, which the live index and `jobs_finished_at_idx` find.
DROP INDEX jobs_created_at_idx;

-- Room on each page for a row's next version, so a HOT update finds space next to the old one:
-- a worker starts a page's jobs about as fast as they were inserted, before the old versions
-- can be pruned. Measured with rounds of 512: every start HOT at 50, four in ten at 70. Set
-- after the rewrite above, so only new pages keep the room.
ALTER TABLE jobs SET (fillfactor = 50);
