-- Job progress: the last percent an agent reported for a job's current attempt, in its own
-- narrow row so frequent reports never rewrite the wide `jobs` row. Written only while the job
-- runs that attempt (a conditional insert-or-update joined on `jobs`).
CREATE TABLE job_progress (
    job_id     UUID        PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    INTEGER     NOT NULL,
    percent    SMALLINT    NOT NULL CHECK (percent BETWEEN 0 AND 100),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
