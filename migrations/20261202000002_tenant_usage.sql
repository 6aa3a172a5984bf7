-- Usage per tenant and UTC day: what the daily quotas are checked against (emails accepted,
-- uploads and their bytes, counted in the transaction that accepts them) and what
-- GET /v1/usage reports (plus variant bytes, processing time and emails sent, added by the
-- workers a few seconds after the fact).
CREATE TABLE tenant_usage (
    tenant           text   NOT NULL,
    day              date   NOT NULL,
    uploads          bigint NOT NULL DEFAULT 0,
    upload_bytes     bigint NOT NULL DEFAULT 0,
    variant_bytes    bigint NOT NULL DEFAULT 0,
    processing_ms    bigint NOT NULL DEFAULT 0,
    emails_accepted  bigint NOT NULL DEFAULT 0,
    emails_sent      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
CREATE INDEX tenant_usage_day_idx ON tenant_usage (day);
