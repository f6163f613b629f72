-- split: take 32 from `ready` into `leases`, read their rows; then end the leases and record
-- the outcome on the wide row (a HOT update: no indexed column changes).
WITH picked AS (
    DELETE FROM ready WHERE job_id IN (
        SELECT job_id FROM ready WHERE pool = 'p'
        ORDER BY priority DESC, fair_tag, seq LIMIT 32 FOR UPDATE SKIP LOCKED)
    RETURNING job_id),
held AS (
    INSERT INTO leases
    SELECT job_id, 1, gen_random_uuid(), now() + interval '30 s', 't', NULL FROM picked
    RETURNING job_id)
SELECT string_agg(j.id::text, ',') AS ids, count(j.payload) AS read
FROM split_jobs j JOIN held ON held.job_id = j.id \gset
WITH ended AS (
    DELETE FROM leases WHERE job_id = ANY(string_to_array(':ids', ',')::uuid[])
    RETURNING job_id)
UPDATE split_jobs j SET state = 3, attempt = 1, finished_at = now(), exit_code = 0,
    result = '{}'::jsonb, updated_at = now()
FROM ended WHERE j.id = ended.job_id
RETURNING j.*;
