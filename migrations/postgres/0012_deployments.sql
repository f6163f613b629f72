-- Deployments (DESIGN §3.6). Job tags first: the guard judges a version by the jobs tagged with
-- its service and version (`{"service": "checkout", "version": "1.4.2"}`).
ALTER TABLE jobs ADD COLUMN tags jsonb NOT NULL DEFAULT '{}';
-- The guard's look-up: a version's jobs that finished lately.
CREATE INDEX jobs_by_version ON jobs (tenant_id, (tags ->> 'service'), (tags ->> 'version'), finished_at)
    WHERE tags ? 'service';

-- The view lists its columns, so it is made again with the new one.
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

-- Where a tenant deploys: the pool whose agents deploy there, and how.
CREATE TABLE environments (
    tenant_id      text        NOT NULL REFERENCES tenants (id),
    name           text        NOT NULL,
    pool           text        NOT NULL,
    deploy_command text        NOT NULL,
    health_url     text,
    secrets        jsonb       NOT NULL DEFAULT '[]',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE deployments (
    id                  uuid        PRIMARY KEY,
    tenant_id           text        NOT NULL REFERENCES tenants (id),
    service             text        NOT NULL,
    version             text        NOT NULL,
    staging_environment text        NOT NULL,
    environment         text        NOT NULL,
    state               smallint    NOT NULL,
    -- The environment this deployment holds for its service while it deploys or is guarded
    -- there (see DeploymentState::holds); NULL otherwise.
    holds               text,
    guard               jsonb       NOT NULL,
    step                smallint,
    step_job            uuid,
    previous_version    text,
    rollback_version    text,
    reason              text,
    guard_started_at    timestamptz,
    guard_ends_at       timestamptz,
    next_evaluation_at  timestamptz,
    next_probe_at       timestamptz,
    created_by          text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz
);
-- One deployment of a service at a time deploys to (or is guarded in) an environment: a
-- promote and a rollback that race cannot both win.
CREATE UNIQUE INDEX deployments_one_per_environment ON deployments (tenant_id, service, holds)
    WHERE holds IS NOT NULL;
CREATE INDEX deployments_tenant_recent ON deployments (tenant_id, id DESC);
-- The driver's scans: steps in flight and guards due.
CREATE INDEX deployments_active ON deployments (state) WHERE state IN (1, 3, 4, 6);

-- What each environment runs: a row per production step that succeeded.
CREATE TABLE releases (
    seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     text        NOT NULL,
    environment   text        NOT NULL,
    service       text        NOT NULL,
    version       text        NOT NULL,
    deployment_id uuid        NOT NULL REFERENCES deployments (id),
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX releases_current ON releases (tenant_id, service, environment, seq DESC);

-- Every state change and gate failure, in order: the watch stream reads it and the
-- notifier delivers it; written in the transaction of the change itself.
CREATE TABLE deployment_events (
    seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     text        NOT NULL,
    deployment_id uuid        NOT NULL REFERENCES deployments (id),
    kind          text        NOT NULL,
    state         smallint    NOT NULL,
    from_state    smallint,
    message       text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployment_events_by_deployment ON deployment_events (deployment_id, seq);
CREATE INDEX deployment_events_by_tenant ON deployment_events (tenant_id, seq);

-- Every gate evaluation, with what it measured.
CREATE TABLE gate_evaluations (
    seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id uuid        NOT NULL REFERENCES deployments (id),
    verdict       smallint    NOT NULL,
    gates         jsonb       NOT NULL,
    inputs        jsonb       NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gate_evaluations_by_deployment ON gate_evaluations (deployment_id, seq);

-- The health probes a guard issued (each an `http` job in the environment's pool).
CREATE TABLE deployment_probes (
    deployment_id uuid        NOT NULL REFERENCES deployments (id),
    job_id        uuid        NOT NULL REFERENCES jobs (id),
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, job_id)
);

-- Samples a service reports about itself (`ReportSignal`).
CREATE TABLE service_signals (
    seq        bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text             NOT NULL,
    service    text             NOT NULL,
    version    text             NOT NULL,
    requests   bigint           NOT NULL,
    errors     bigint           NOT NULL,
    latency_ms double precision,
    at         timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX service_signals_by_version ON service_signals (tenant_id, service, version, at);
