-- The job queue (embedded SQLite). Instants are integer milliseconds since the Unix epoch, taken
-- from SQLite's clock; states and priorities as in switchyard_types.
CREATE TABLE jobs (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL UNIQUE,
    tenant_id         TEXT    NOT NULL,
    pool              TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    payload           TEXT    NOT NULL,
    priority          INTEGER NOT NULL,
    labels            TEXT    NOT NULL DEFAULT '{}',
    state             INTEGER NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    attempt_limit     INTEGER NOT NULL,
    timeout_ms        INTEGER NOT NULL,
    run_at            INTEGER NOT NULL,
    fair_tag          INTEGER NOT NULL,
    idempotency_key   TEXT,
    concurrency_key   TEXT,
    concurrency_limit INTEGER NOT NULL DEFAULT 1,
    claimed_by        TEXT,
    claimed_at        INTEGER,
    lease_expires_at  INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER,
    exit_code         INTEGER,
    result            TEXT,
    failures          TEXT    NOT NULL DEFAULT '[]',
    last_failed_at    INTEGER,
    redrives          INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE INDEX jobs_claimable ON jobs (pool, priority DESC, fair_tag, seq) WHERE state = 0;
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state IN (1, 2);
CREATE INDEX jobs_tenant_recent ON jobs (tenant_id, id DESC);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE queue_fairness (
    pool      TEXT    NOT NULL,
    priority  INTEGER NOT NULL,
    tenant_id TEXT    NOT NULL,
    last_tag  INTEGER NOT NULL,
    PRIMARY KEY (pool, priority, tenant_id)
);
