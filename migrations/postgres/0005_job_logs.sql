-- Job logs: chunks of each attempt's output, keyed by (job, attempt, sequence number) so a
-- retried chunk is stored once; `job_log_bytes` keeps each job's total for the size cap.
CREATE TABLE job_logs (
    job_id     UUID        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    INTEGER     NOT NULL,
    seq        BIGINT      NOT NULL,
    tenant_id  TEXT        NOT NULL,
    data       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt, seq)
);
CREATE TABLE job_log_bytes (
    job_id UUID   PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    bytes  BIGINT NOT NULL
);
