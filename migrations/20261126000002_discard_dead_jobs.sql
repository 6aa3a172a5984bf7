-- Operators may discard dead jobs (DELETE /v1/admin/jobs/{id}). The media a discarded job was
-- for keeps its row and its `failed` state; it just no longer points at a job.
ALTER TABLE media
    DROP CONSTRAINT media_job_id_fkey,
    ADD CONSTRAINT media_job_id_fkey FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE SET NULL;

-- Reviving a job looks up its media by job id.
CREATE INDEX media_job_id_idx ON media (job_id);
