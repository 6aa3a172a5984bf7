-- Variants may be AVIF too (KILN_FORMATS=jpeg,webp,avif). Only the CHECK changes: validating
-- it reads the table once under a lock that blocks writers briefly, no rewrite.
ALTER TABLE media_variants DROP CONSTRAINT media_variants_format_check;
ALTER TABLE media_variants
    ADD CONSTRAINT media_variants_format_check CHECK (format IN ('jpeg', 'webp', 'avif'));
