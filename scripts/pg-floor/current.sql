-- current: the claim and the completion of crates/store/src/postgres_claim.rs and postgres.rs,
-- without the parts no job of this run needs (labels, running limits, slots).
WITH picked AS (
    SELECT j.id FROM jobs j LEFT JOIN tenant_limits l ON l.tenant_id = j.tenant_id
    WHERE j.state = 0 AND j.pool = 'p' AND j.run_at <= now() AND j.labels <@ '{}'::jsonb
      AND j.concurrency_key IS NULL AND l.max_running IS NULL
    ORDER BY j.priority DESC, j.fair_tag, j.seq LIMIT 32 FOR UPDATE OF j SKIP LOCKED),
claimed AS (
    UPDATE jobs j SET state = 1, attempt = j.attempt + 1, claimed_by = 'agent', claimed_at = now(),
        lease_expires_at = now() + interval '30 s', holder_agent = gen_random_uuid(),
        started_at = NULL, updated_at = now()
    FROM picked WHERE j.id = picked.id RETURNING j.*)
SELECT string_agg(id::text, ',') AS ids FROM claimed \gset
UPDATE jobs j SET state = 3, finished_at = now(), exit_code = 0, result = '{}'::jsonb,
    lease_expires_at = NULL, updated_at = now()
WHERE j.id = ANY(string_to_array(':ids', ',')::uuid[]) AND j.tenant_id = 't' AND j.state IN (1, 2)
RETURNING j.*;
