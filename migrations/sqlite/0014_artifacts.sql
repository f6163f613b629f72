-- Artifacts (embedded SQLite); see the PostgreSQL migration of the same number. Instants are
-- integer milliseconds since the Unix epoch, ids are UUID text.
CREATE TABLE artifacts (
    id           TEXT    PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    job_id       TEXT    NOT NULL REFERENCES jobs (id),
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    storage_key  TEXT    NOT NULL UNIQUE,
    state        INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    expired_at   INTEGER,
    sweep_until  INTEGER
);
CREATE INDEX artifacts_tenant_recent ON artifacts (tenant_id, id DESC);
CREATE INDEX artifacts_by_job ON artifacts (job_id);
CREATE INDEX artifacts_due ON artifacts (expires_at) WHERE state = 0;
