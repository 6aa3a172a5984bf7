-- One row per stored Postgres backup (pg_dump --format=custom, zstd-compressed).
CREATE TABLE backups (
    id              uuid PRIMARY KEY,
    -- Where the compressed dump lives: backups/<UTC time>.dump.zst
    storage_key     text NOT NULL UNIQUE,
    -- Size and SHA-256 of the stored (compressed) file; restore refuses a file that differs.
    bytes           bigint NOT NULL,
    sha256          text NOT NULL,
    duration_ms     bigint NOT NULL,
    -- `SHOW server_version` of the dumped server, to pick a matching pg_restore.
    server_version  text NOT NULL,
    job_id          uuid REFERENCES jobs (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX backups_created_at_idx ON backups (created_at DESC);
