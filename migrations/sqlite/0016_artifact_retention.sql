-- Per-tenant artifact retention (embedded SQLite); see the PostgreSQL migration of the same number.
CREATE TABLE artifact_retention (
    tenant_id    TEXT    PRIMARY KEY REFERENCES tenants (id),
    retention_ms INTEGER NOT NULL CHECK (retention_ms > 0)
);
