-- Artifacts (DESIGN §3.7): what each upload stored in the artifact store, under which key, until
-- when. The content is in the artifact store; the row stays as the record after it expires.
-- state: 0 stored, 1 expired.
CREATE TABLE artifacts (
    id           uuid        PRIMARY KEY,
    tenant_id    text        NOT NULL REFERENCES tenants (id),
    job_id       uuid        NOT NULL REFERENCES jobs (id),
    name         text        NOT NULL,
    content_type text        NOT NULL,
    sha256       text        NOT NULL,
    size         bigint      NOT NULL,
    storage_key  text        NOT NULL UNIQUE,
    state        smallint    NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    expired_at   timestamptz,
    -- The sweeper's lease: a claimed artifact is not claimed again before then.
    sweep_until  timestamptz
);
-- Listing a tenant's artifacts, newest first.
CREATE INDEX artifacts_tenant_recent ON artifacts (tenant_id, id DESC);
-- An upload's artifacts.
CREATE INDEX artifacts_by_job ON artifacts (job_id);
-- The sweeper's claim: only stored rows.
CREATE INDEX artifacts_due ON artifacts (expires_at) WHERE state = 0;
