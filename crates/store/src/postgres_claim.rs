//! Claims on PostgreSQL: each (tenant, pool, labels) group of a claim batch
//! ([`crate::claim_batch`]) is served by one `FOR UPDATE SKIP LOCKED` statement, which gives each
//! job its slot's agent, lease and holder.

use sqlx::postgres::PgPool;
use switchyard_types::{ClaimRequest, Job, Labels, Result, TenantId};
use uuid::Uuid;

use crate::claim_batch::{ClaimGroup, deal, hand_out};
use crate::error::from_sqlx;
use crate::limits::{Candidate, Running, lock_names};
use crate::rows::{RawJob, millis};

/// Sets a claimed job's columns, given the expressions of the agent, of the lease in
/// milliseconds and of the holding agent's registry id.
macro_rules! claim_set {
    ($agent:literal, $lease:literal, $holder:literal) => {
        concat!(
            "state = 1, attempt = j.attempt + 1, claimed_by = ",
            $agent,
            ", claimed_at = now(), lease_expires_at = now() + ",
            $lease,
            " * interval '1 millisecond', holder_agent = ",
            $holder,
            ", started_at = NULL, updated_at = now()"
        )
    };
}

/// The claim: one statement that takes the first `$4` due jobs of the pool in claim order and
/// claims those no running limit applies to, the n-th of them for the n-th slot of the arrays
/// `$5` (agents), `$6` (leases in ms) and `$7` (holders). Jobs under a limit are returned
/// `deferred` (with their tenant's `max_running`) for [`claim_limited`]; jobs whose limit is
/// visibly reached are not picked at all, so they never hide claimable work behind them.
const CLAIM: &str = concat!(
    "WITH picked AS (
         SELECT j.id, j.priority, j.fair_tag, j.seq, l.max_running,
                (j.concurrency_key IS NOT NULL OR l.max_running IS NOT NULL) AS constrained
         FROM jobs j LEFT JOIN tenant_limits l ON l.tenant_id = j.tenant_id
         WHERE j.state = 0 AND j.pool = $1 AND j.run_at <= now()
           AND ($2::text IS NULL OR j.tenant_id = $2)
           AND j.labels <@ $3::jsonb
           AND ",
    under_limits!(),
    "
         ORDER BY j.priority DESC, j.fair_tag, j.seq
         LIMIT $4
         FOR UPDATE OF j SKIP LOCKED),
     numbered AS (
         SELECT id, row_number() OVER (ORDER BY priority DESC, fair_tag, seq) AS slot
         FROM picked WHERE NOT constrained),
     claimed AS (
         UPDATE jobs j SET ",
    claim_set!("s.agent", "s.lease_ms", "s.holder"),
    "
         FROM numbered p
         JOIN UNNEST($5::text[], $6::int8[], $7::uuid[]) WITH ORDINALITY
              AS s(agent, lease_ms, holder, slot) ON s.slot = p.slot
         WHERE j.id = p.id
         RETURNING j.*, s.slot)
     SELECT claimed.*, false AS deferred, NULL::int AS max_running FROM claimed
     UNION ALL
     SELECT j.*, NULL::int8 AS slot, true AS deferred, p.max_running
     FROM jobs j JOIN picked p ON p.id = j.id
     WHERE p.constrained"
);

/// Claims the chosen ids (`$1`) that are still queued, each for its slot: agent `$2`, lease
/// `$3` ms, holder `$4`, slot number `$5`.
const CLAIM_CHOSEN: &str = concat!(
    "UPDATE jobs j SET ",
    claim_set!("u.agent", "u.lease_ms", "u.holder"),
    " FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::uuid[], $5::int8[])
          AS u(id, agent, lease_ms, holder, slot)
      WHERE j.id = ANY($1) AND j.id = u.id AND j.state = 0
      RETURNING j.*, u.slot"
);

/// A row of [`CLAIM`]: a claimed job with its slot, or a deferred one.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    job: RawJob,
    slot: Option<i64>,
    deferred: bool,
    max_running: Option<i32>,
}

/// A row of [`CLAIM_CHOSEN`].
#[derive(sqlx::FromRow)]
struct ChosenRow {
    #[sqlx(flatten)]
    job: RawJob,
    slot: i64,
}

impl ClaimGroup for PgPool {
    /// One [`CLAIM`] statement for the group; jobs under running limits then go through
    /// [`claim_limited`] for the slots left over.
    async fn claim_group(
        &self,
        tenant: Option<&TenantId>,
        name: &str,
        labels: &Labels,
        claims: &[&ClaimRequest],
    ) -> Result<Vec<Result<Vec<Job>>>> {
        let pool = self;
        let slots = deal(claims);
        let agents: Vec<&str> = slots.iter().map(|&c| claims[c].agent_id.as_str()).collect();
        let leases: Vec<i64> = slots.iter().map(|&c| millis(claims[c].lease)).collect();
        let holders: Vec<Option<Uuid>> = slots.iter().map(|&c| claims[c].holder).collect();
        let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM)
            .bind(name)
            .bind(tenant.map(TenantId::as_str))
            .bind(serde_json::json!(labels))
            .bind(i64::try_from(slots.len()).unwrap_or(i64::MAX))
            .bind(&agents)
            .bind(&leases)
            .bind(&holders)
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?;
        let mut claimed = Vec::new();
        let mut deferred = Vec::new();
        for row in rows {
            match row.slot {
                Some(slot) if !row.deferred => claimed.push((slot, row.job)),
                _ => deferred.push(row),
            }
        }
        // Slots are filled in order, so the unfilled ones are those after the claimed jobs.
        let rest: Vec<(i64, usize)> = slots
            .iter()
            .enumerate()
            .skip(claimed.len())
            .map(|(i, &c)| (i64::try_from(i + 1).unwrap_or(i64::MAX), c))
            .collect();
        if !deferred.is_empty() && !rest.is_empty() {
            let limited = claim_limited(pool, deferred, &rest, claims).await?;
            claimed.extend(limited.into_iter().map(|row| (row.slot, row.job)));
        }
        hand_out(&slots, claims.len(), claimed)
    }
}

/// Claims the candidates a running limit applies to, for the `free` slots (number, claim):
/// under the limits' advisory locks (taken in one global order), counts what runs now with a
/// fresh snapshot, takes what fits.
async fn claim_limited(
    pool: &PgPool,
    deferred: Vec<ClaimRow>,
    free: &[(i64, usize)],
    claims: &[&ClaimRequest],
) -> Result<Vec<ChosenRow>> {
    let mut candidates: Vec<Candidate> = deferred
        .into_iter()
        .map(|r| Candidate {
            id: r.job.id,
            tenant_id: r.job.tenant_id,
            concurrency_key: r.job.concurrency_key,
            concurrency_limit: i64::from(r.job.concurrency_limit),
            max_running: r.max_running.map(i64::from),
        })
        .collect();
    candidates.dedup_by_key(|c| c.id);
    let mut tx = pool.begin().await.map_err(from_sqlx)?;
    for name in lock_names(&candidates) {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
    }
    let tenants: Vec<&str> = candidates.iter().map(|c| c.tenant_id.as_str()).collect();
    let counts: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT tenant_id, concurrency_key, count(*) FROM jobs
         WHERE state IN (1, 2) AND tenant_id = ANY($1)
         GROUP BY tenant_id, concurrency_key",
    )
    .bind(&tenants)
    .fetch_all(&mut *tx)
    .await
    .map_err(from_sqlx)?;
    let mut running = Running::default();
    for (tenant, key, n) in &counts {
        running.add(tenant, key.as_deref(), *n);
    }
    let chosen = running.choose(&candidates, free.len());
    let free = &free[..chosen.len()];
    let rows: Vec<ChosenRow> = sqlx::query_as(CLAIM_CHOSEN)
        .bind(&chosen)
        .bind(
            free.iter()
                .map(|&(_, c)| claims[c].agent_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            free.iter()
                .map(|&(_, c)| millis(claims[c].lease))
                .collect::<Vec<_>>(),
        )
        .bind(
            free.iter()
                .map(|&(_, c)| claims[c].holder)
                .collect::<Vec<_>>(),
        )
        .bind(free.iter().map(|&(slot, _)| slot).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    tx.commit().await.map_err(from_sqlx)?;
    Ok(rows)
}
