-- Job progress (embedded SQLite); see the PostgreSQL migration of the same number.
CREATE TABLE job_progress (
    job_id     TEXT    PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    percent    INTEGER NOT NULL CHECK (percent BETWEEN 0 AND 100),
    updated_at INTEGER NOT NULL
);
