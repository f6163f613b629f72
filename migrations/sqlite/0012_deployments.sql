-- Deployments (embedded SQLite); see the PostgreSQL migration of the same number. Instants are
-- integer milliseconds since the Unix epoch, ids are UUID text.
ALTER TABLE jobs ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
CREATE INDEX jobs_by_version ON jobs (tenant_id, json_extract(tags, '$.service'),
                                      json_extract(tags, '$.version'), finished_at)
    WHERE json_extract(tags, '$.service') IS NOT NULL;

DROP VIEW jobs_read;
CREATE VIEW jobs_read AS
SELECT
       j.id, j.seq, j.tenant_id, j.pool, j.kind, j.payload, j.priority, j.labels, j.tags, j.state,
       j.attempt, j.max_attempts, j.attempt_limit, j.timeout_ms, j.run_at, j.fair_tag,
       j.idempotency_key, j.concurrency_key, j.concurrency_limit, j.claimed_by, j.claimed_at,
       CASE WHEN j.state IN (1, 2) AND a.lease_until > j.lease_expires_at
            THEN a.lease_until ELSE j.lease_expires_at END AS lease_expires_at,
       j.started_at, j.finished_at, j.exit_code, j.result, j.failures, j.last_failed_at,
       j.redrives, j.created_at, j.updated_at, j.holder_agent
FROM jobs j
LEFT JOIN agents a ON a.id = j.holder_agent;

CREATE TABLE environments (
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    name           TEXT    NOT NULL,
    pool           TEXT    NOT NULL,
    deploy_command TEXT    NOT NULL,
    health_url     TEXT,
    secrets        TEXT    NOT NULL DEFAULT '[]',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE deployments (
    id                  TEXT    PRIMARY KEY,
    tenant_id           TEXT    NOT NULL REFERENCES tenants (id),
    service             TEXT    NOT NULL,
    version             TEXT    NOT NULL,
    staging_environment TEXT    NOT NULL,
    environment         TEXT    NOT NULL,
    state               INTEGER NOT NULL,
    holds               TEXT,
    guard               TEXT    NOT NULL,
    step                INTEGER,
    step_job            TEXT,
    previous_version    TEXT,
    rollback_version    TEXT,
    reason              TEXT,
    guard_started_at    INTEGER,
    guard_ends_at       INTEGER,
    next_evaluation_at  INTEGER,
    next_probe_at       INTEGER,
    created_by          TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    finished_at         INTEGER
);
CREATE UNIQUE INDEX deployments_one_per_environment ON deployments (tenant_id, service, holds)
    WHERE holds IS NOT NULL;
CREATE INDEX deployments_tenant_recent ON deployments (tenant_id, id DESC);
CREATE INDEX deployments_active ON deployments (state) WHERE state IN (1, 3, 4, 6);

CREATE TABLE releases (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT    NOT NULL,
    environment   TEXT    NOT NULL,
    service       TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    deployment_id TEXT    NOT NULL REFERENCES deployments (id),
    at            INTEGER NOT NULL
);
CREATE INDEX releases_current ON releases (tenant_id, service, environment, seq DESC);

CREATE TABLE deployment_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT    NOT NULL,
    deployment_id TEXT    NOT NULL REFERENCES deployments (id),
    kind          TEXT    NOT NULL,
    state         INTEGER NOT NULL,
    from_state    INTEGER,
    message       TEXT    NOT NULL,
    at            INTEGER NOT NULL
);
CREATE INDEX deployment_events_by_deployment ON deployment_events (deployment_id, seq);
CREATE INDEX deployment_events_by_tenant ON deployment_events (tenant_id, seq);

CREATE TABLE gate_evaluations (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT    NOT NULL REFERENCES deployments (id),
    verdict       INTEGER NOT NULL,
    gates         TEXT    NOT NULL,
    inputs        TEXT    NOT NULL,
    at            INTEGER NOT NULL
);
CREATE INDEX gate_evaluations_by_deployment ON gate_evaluations (deployment_id, seq);

CREATE TABLE deployment_probes (
    deployment_id TEXT    NOT NULL REFERENCES deployments (id),
    job_id        TEXT    NOT NULL REFERENCES jobs (id),
    at            INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, job_id)
);

CREATE TABLE service_signals (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT    NOT NULL,
    service    TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    requests   INTEGER NOT NULL,
    errors     INTEGER NOT NULL,
    latency_ms REAL,
    at         INTEGER NOT NULL
);
CREATE INDEX service_signals_by_version ON service_signals (tenant_id, service, version, at);
