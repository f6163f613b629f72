-- The scratch data of scripts/pg-floor/run: :jobs due jobs in each schema.

-- current: the real jobs table (the migrations made it).
INSERT INTO jobs (id, tenant_id, pool, kind, payload, priority, state, max_attempts,
                  attempt_limit, timeout_ms, run_at, fair_tag)
SELECT gen_random_uuid(), 't', 'p', 'noop', '{}', 2, 0, 3, 3, 60000, now(), g
FROM generate_series(1, :jobs) g;

-- bare: the least a durable queue writes.
CREATE TABLE bare (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pool        text     NOT NULL,
    priority    smallint NOT NULL,
    state       smallint NOT NULL,
    attempt     integer  NOT NULL DEFAULT 0,
    holder      uuid,
    lease_until timestamptz
) WITH (fillfactor = 70);
CREATE INDEX bare_claimable ON bare (pool, priority DESC, id) WHERE state = 0;
INSERT INTO bare (pool, priority, state) SELECT 'p', 2, 0 FROM generate_series(1, :jobs);

-- split: claim from a narrow table, hold in another, update the wide row once, HOT.
CREATE TABLE split_jobs (LIKE jobs INCLUDING DEFAULTS) WITH (fillfactor = 50);
ALTER TABLE split_jobs ADD PRIMARY KEY (id);
CREATE INDEX split_jobs_tenant_recent ON split_jobs (tenant_id, id DESC);
INSERT INTO split_jobs SELECT * FROM jobs;
CREATE TABLE ready (
    job_id   uuid PRIMARY KEY,
    pool     text     NOT NULL,
    priority smallint NOT NULL,
    fair_tag bigint   NOT NULL,
    seq      bigint   NOT NULL
);
CREATE INDEX ready_order ON ready (pool, priority DESC, fair_tag, seq);
INSERT INTO ready SELECT id, pool, priority, fair_tag, seq FROM split_jobs;
CREATE TABLE leases (
    job_id          uuid PRIMARY KEY,
    attempt         integer     NOT NULL,
    holder          uuid,
    lease_until     timestamptz NOT NULL,
    tenant_id       text        NOT NULL,
    concurrency_key text
);
CREATE INDEX leases_until ON leases (lease_until);
CREATE INDEX leases_running ON leases (tenant_id, concurrency_key);

VACUUM ANALYZE;
