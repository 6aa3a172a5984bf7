-- Every job is written three times: inserted, started, finished. An update can be HOT (a new
-- row version on the same page, no index entries at all) only when no index covers a column
-- it changes, and `status` was indexed, so each start and each finish wrote a new entry into
-- every index of the table. Now no index covers `status`, `attempts`, `started_at` or
-- `last_error`, and a start changes nothing else: starting (or failing) an attempt is HOT.
--
-- What the status index answered comes from columns that change only when a job finishes:
-- * live jobs (queued, running, retrying) are the rows with no `finished_at` — a failed
--   attempt no longer sets it, only success and death do;
-- * dead jobs are the rows with a `dead_at`, set when a job is buried and cleared on revive.
ALTER TABLE jobs ADD COLUMN dead_at timestamptz;
UPDATE jobs SET dead_at = coalesce(finished_at, now()) WHERE status = 'dead';
UPDATE jobs SET finished_at = NULL WHERE status NOT IN ('succeeded', 'dead');
UPDATE jobs SET finished_at = now() WHERE status IN ('succeeded', 'dead') AND finished_at IS NULL;
-- The partial indexes below are only right while these hold.
ALTER TABLE jobs
    ADD CONSTRAINT jobs_dead_at_check CHECK ((status = 'dead') = (dead_at IS NOT NULL)),
    ADD CONSTRAINT jobs_finished_at_check
        CHECK ((status IN ('succeeded', 'dead')) = (finished_at IS NOT NULL));

DROP INDEX jobs_status_kind_idx;
CREATE INDEX jobs_live_idx ON jobs (created_at) WHERE finished_at IS NULL;
CREATE INDEX jobs_dead_idx ON jobs (created_at) WHERE dead_at IS NOT NULL;
-- One index entry fewer for every row version: newest-first lists walk the primary key (job
-- ids are UUIDv7, made when the job is), and a job created in an activity window is live now
-- or finished in that window, which the two indexes above find.
DROP INDEX jobs_created_at_idx;

-- Room on each page for a row's next version, so a HOT update finds space next to the old one:
-- a worker starts a page's jobs about as fast as they were inserted, before the old versions
-- can be pruned. Measured with rounds of 512: every start HOT at 50, four in ten at 70.
ALTER TABLE jobs SET (fillfactor = 50);
