-- bare: claim 32, then complete them.
WITH picked AS (
    SELECT id FROM bare WHERE state = 0 AND pool = 'p'
    ORDER BY priority DESC, id LIMIT 32 FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE bare b SET state = 1, attempt = b.attempt + 1, holder = gen_random_uuid(),
        lease_until = now() + interval '30 s'
    FROM picked WHERE b.id = picked.id RETURNING b.id)
SELECT string_agg(id::text, ',') AS ids FROM claimed \gset
UPDATE bare SET state = 3, lease_until = NULL
WHERE id = ANY(string_to_array(':ids', ',')::bigint[]) AND state = 1;
