-- Per-tenant running limits, and the index the claim counts running jobs with (per tenant, and
-- per concurrency key).
CREATE TABLE tenant_limits (
    tenant_id   text    PRIMARY KEY,
    max_running integer NOT NULL CHECK (max_running > 0)
);
CREATE INDEX jobs_running ON jobs (tenant_id, concurrency_key) WHERE state IN (1, 2);
