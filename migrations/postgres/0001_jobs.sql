-- The job queue. States and priorities are small integers (see switchyard_types::JobState and
-- Priority); every lease instant is the database's now().
CREATE TABLE jobs (
    id                uuid        PRIMARY KEY,
    seq               bigint      GENERATED ALWAYS AS IDENTITY,
    tenant_id         text        NOT NULL,
    pool              text        NOT NULL,
    kind              text        NOT NULL,
    payload           jsonb       NOT NULL,
    priority          smallint    NOT NULL,
    labels            jsonb       NOT NULL DEFAULT '{}',
    state             smallint    NOT NULL,
    attempt           integer     NOT NULL DEFAULT 0,
    max_attempts      integer     NOT NULL,
    attempt_limit     integer     NOT NULL,
    timeout_ms        bigint      NOT NULL,
    run_at            timestamptz NOT NULL,
    -- Start tag for round-robin across tenants within a priority (start-time fair queueing).
    fair_tag          bigint      NOT NULL,
    idempotency_key   text,
    concurrency_key   text,
    concurrency_limit integer     NOT NULL DEFAULT 1,
    claimed_by        text,
    claimed_at        timestamptz,
    lease_expires_at  timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    exit_code         integer,
    result            jsonb,
    failures          jsonb       NOT NULL DEFAULT '[]',
    last_failed_at    timestamptz,
    redrives          integer     NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The claim scans only queued rows, in claim order.
CREATE INDEX jobs_claimable ON jobs (pool, priority DESC, fair_tag, seq) WHERE state = 0;
-- The reaper scans only leased rows, by expiry.
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state IN (1, 2);
-- Listing a tenant's jobs, newest first.
CREATE INDEX jobs_tenant_recent ON jobs (tenant_id, id DESC);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The last fair tag handed to each tenant per (pool, priority).
CREATE TABLE queue_fairness (
    pool      text     NOT NULL,
    priority  smallint NOT NULL,
    tenant_id text     NOT NULL,
    last_tag  bigint   NOT NULL,
    PRIMARY KEY (pool, priority, tenant_id)
);
