-- The W3C traceparent of the request (or tick) that enqueued a job, so the job's message and
-- the worker's span continue that trace.
ALTER TABLE jobs ADD COLUMN traceparent text;
