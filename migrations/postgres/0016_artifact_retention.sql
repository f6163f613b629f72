-- Per-tenant artifact retention (DESIGN §3.7): how long a tenant's artifacts are kept. A tenant
-- without a row keeps them for the installation's default (SWITCHYARD_ARTIFACT_RETENTION_SECONDS).
CREATE TABLE artifact_retention (
    tenant_id    text   PRIMARY KEY REFERENCES tenants (id),
    retention_ms bigint NOT NULL CHECK (retention_ms > 0)
);
