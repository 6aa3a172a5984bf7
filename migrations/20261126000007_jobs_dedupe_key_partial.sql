-- Almost no job has a dedupe key (only cron ticks and notifications do), yet a plain UNIQUE
-- index holds a NULL entry for every row version, and each status change writes a new one.
-- A partial index keeps uniqueness where it matters and skips that write on the hot path.
ALTER TABLE jobs DROP CONSTRAINT jobs_dedupe_key_key;
CREATE UNIQUE INDEX jobs_dedupe_key_idx ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL;
