-- Job logs (embedded SQLite); see the PostgreSQL migration of the same number.
CREATE TABLE job_logs (
    job_id     TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    tenant_id  TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);
CREATE TABLE job_log_bytes (
    job_id TEXT    PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    bytes  INTEGER NOT NULL
);
