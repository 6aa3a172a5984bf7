-- One row per finished transcode, for the operators' dashboard's realtime factor (video
-- seconds per ffmpeg CPU second over the last minutes). Each insert removes rows older than an
-- hour, so the table stays a few rows long whatever the volume.
CREATE TABLE video_transcodes (
    job_id         uuid PRIMARY KEY,
    finished_at    timestamptz NOT NULL DEFAULT now(),
    media_seconds  double precision NOT NULL,
    cpu_seconds    double precision NOT NULL
);
CREATE INDEX video_transcodes_finished_at_idx ON video_transcodes (finished_at);
