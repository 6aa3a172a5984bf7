-- Video media: what ffprobe found at upload (duration, codec, bit rate, audio, rotation, HDR),
-- and the transcode's progress while it runs (0 to 1; NULL for images and once done).
ALTER TABLE media ADD COLUMN video jsonb;
ALTER TABLE media ADD COLUMN progress real;

-- MP4 renditions (`360p.mp4`) beside the image variants of the poster.
ALTER TABLE media_variants DROP CONSTRAINT media_variants_format_check;
ALTER TABLE media_variants
    ADD CONSTRAINT media_variants_format_check
    CHECK (format IN ('jpeg', 'webp', 'avif', 'mp4'));
