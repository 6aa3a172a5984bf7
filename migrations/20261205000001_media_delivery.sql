-- Media a browser can show: strong ETags for variants, and a tenant's opt-in to permanent
-- public variant URLs.

-- The SHA-256 of the variant's bytes (hex), its ETag. NULL for variants made before this
-- column existed until the workers' backfill has hashed them.
ALTER TABLE media_variants ADD COLUMN sha256 text;

-- Per-tenant settings that the tenant itself may change (with a media key).
CREATE TABLE tenant_settings (
    tenant             text PRIMARY KEY,
    -- Variant URLs without an expiry (`?sig=` only), cacheable by anyone for a year.
    public_media_urls  boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- App metadata (`PATCH /v1/media/{id}`): string values by string keys, as Stripe's metadata,
-- so `?metadata.contact=42` is one containment test the GIN index answers.
ALTER TABLE media ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
CREATE INDEX media_metadata_idx ON media USING gin (metadata jsonb_path_ops);

-- Listing a tenant's media and jobs, newest first, by keyset on the (time-ordered, v7) id.
-- Neither column ever changes, so job updates stay HOT.
CREATE INDEX media_tenant_id_idx ON media (tenant, id);
CREATE INDEX jobs_tenant_id_idx ON jobs (tenant, id) WHERE tenant IS NOT NULL;

-- A ready media's placeholder ({thumbhash, blurhash, dominant_color}), from its smallest
-- variant; media ready before this column existed get it from the workers' backfill.
ALTER TABLE media ADD COLUMN placeholder jsonb;

-- Dedupe: an upload of bytes its tenant already has shares the files of the media that made
-- them (`content_of`, the owner: its original and variants) instead of storing and processing
-- them again. The owner's files stay while any live media shares them.
ALTER TABLE media ADD COLUMN content_of uuid;
CREATE INDEX media_tenant_sha256_idx ON media (tenant, sha256);
CREATE INDEX media_content_of_idx ON media (content_of) WHERE content_of IS NOT NULL;

-- Uploads straight from a browser: a short-lived token an app's backend makes for one upload,
-- with the limits it chose; only the token's SHA-256 is stored.
CREATE TABLE upload_tokens (
    id             uuid PRIMARY KEY,
    token_hash     bytea NOT NULL UNIQUE,
    tenant         text NOT NULL,
    -- The key that made it: the upload counts as that key's.
    api_key_id     uuid NOT NULL,
    max_bytes      bigint NOT NULL,
    -- Sniffed types the upload may be (image/jpeg, ...).
    content_types  text[] NOT NULL,
    -- Attached to the media the upload becomes.
    metadata       jsonb NOT NULL DEFAULT '{}',
    expires_at     timestamptz NOT NULL,
    -- The tus upload it was spent on: a token makes one upload.
    upload_id      uuid,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upload_tokens_expires_idx ON upload_tokens (expires_at);

-- Resumable (tus 1.0) uploads: the state lives here and the bytes in storage, one object per
-- PATCH (`tus/<id>/<offset>-<n>`), so any API process can take the next request.
CREATE TABLE tus_uploads (
    id               uuid PRIMARY KEY,
    tenant           text NOT NULL,
    api_key_id       uuid NOT NULL,
    upload_length    bigint NOT NULL,
    upload_offset    bigint NOT NULL DEFAULT 0,
    chunks           text[] NOT NULL DEFAULT '{}',
    -- Sniffed from the first bytes.
    content_type     text,
    -- Limits of the token it was made with (NULL types: any image).
    content_types    text[],
    metadata         jsonb NOT NULL DEFAULT '{}',
    -- The client's Upload-Metadata header, echoed on HEAD.
    upload_metadata  text,
    -- The media it becomes, named at creation so that finishing is idempotent.
    media_id         uuid NOT NULL,
    finished_at      timestamptz,
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tus_uploads_expires_idx ON tus_uploads (expires_at);
