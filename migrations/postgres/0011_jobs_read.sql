-- Jobs as the API reads them. A job held by an agent's stream is leased until the later of its
-- own lease and its agent's (`agents.lease_until`, extended by each heartbeat): the moment the
-- reaper could take it, which is what `lease_expires_at` promises.
CREATE VIEW jobs_read AS
SELECT
       j.id, j.seq, j.tenant_id, j.pool, j.kind, j.payload, j.priority, j.labels, j.state,
       j.attempt, j.max_attempts, j.attempt_limit, j.timeout_ms, j.run_at, j.fair_tag,
       j.idempotency_key, j.concurrency_key, j.concurrency_limit, j.claimed_by, j.claimed_at,
       CASE WHEN j.state IN (1, 2) AND a.lease_until > j.lease_expires_at
            THEN a.lease_until ELSE j.lease_expires_at END AS lease_expires_at,
       j.started_at, j.finished_at, j.exit_code, j.result, j.failures, j.last_failed_at,
       j.redrives, j.created_at, j.updated_at, j.holder_agent
FROM jobs j
LEFT JOIN agents a ON a.id = j.holder_agent;
