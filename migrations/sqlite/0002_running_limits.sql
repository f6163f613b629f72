CREATE TABLE tenant_limits (
    tenant_id   TEXT    PRIMARY KEY,
    max_running INTEGER NOT NULL CHECK (max_running > 0)
);
CREATE INDEX jobs_running ON jobs (tenant_id, concurrency_key) WHERE state IN (1, 2);
