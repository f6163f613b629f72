//! Claims on PostgreSQL, group-committed: claims that arrive while earlier ones run are gathered
//! and, per (tenant, pool, labels), served by one `FOR UPDATE SKIP LOCKED` statement. The jobs it
//! takes, in claim order, are dealt round-robin to the claimants' slots, so each claimant gets
//! its share of the head of the queue and its own agent, lease and holder on every job.

use std::collections::HashMap;

use sqlx::postgres::PgPool;
use switchyard_types::{ClaimRequest, Error, Job, Labels, Result, TenantId};
use uuid::Uuid;

use crate::error::from_sqlx;
use crate::limits::{Candidate, Running, lock_names};
use crate::rows::{RawJob, into_jobs, millis};

/// One claim waiting for its batch.
#[derive(Debug)]
pub(crate) struct PendingClaim {
    /// The tenant to claim from (`None`: any).
    pub(crate) tenant: Option<TenantId>,
    /// What to claim, for whom.
    pub(crate) req: ClaimRequest,
}

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

/// Serves a batch of claims: one answer per claim, in order.
pub(crate) async fn claim_batch(pool: PgPool, batch: Vec<PendingClaim>) -> Vec<Result<Vec<Job>>> {
    let mut groups: HashMap<(Option<&TenantId>, &str, &Labels), Vec<usize>> = HashMap::new();
    for (i, c) in batch.iter().enumerate() {
        groups
            .entry((c.tenant.as_ref(), c.req.pool.as_str(), &c.req.labels))
            .or_default()
            .push(i);
    }
    let groups: Vec<_> = groups.into_iter().collect();
    // Groups (pools) run side by side: one waiting on a running limit's lock delays no other.
    let claimed =
        futures::future::join_all(groups.iter().map(|((tenant, name, labels), members)| {
            let claims: Vec<&ClaimRequest> = members.iter().map(|&i| &batch[i].req).collect();
            let pool = &pool;
            async move { claim_group(pool, *tenant, name, labels, &claims).await }
        }))
        .await;
    let mut answers: Vec<Option<Result<Vec<Job>>>> = batch.iter().map(|_| None).collect();
    for ((_, members), claimed) in groups.into_iter().zip(claimed) {
        match claimed {
            Ok(jobs) => {
                for (i, jobs) in members.into_iter().zip(jobs) {
                    answers[i] = Some(jobs);
                }
            }
            Err(e) => {
                for i in members {
                    answers[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(Error::internal("a claim was left out of its batch"))))
        .collect()
}

/// Claims for every claim of one (tenant, pool, labels) group at once; the jobs of each claim,
/// in claim order.
async fn claim_group(
    pool: &PgPool,
    tenant: Option<&TenantId>,
    name: &str,
    labels: &Labels,
    claims: &[&ClaimRequest],
) -> Result<Vec<Result<Vec<Job>>>> {
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
    let mut taken: Vec<Vec<RawJob>> = claims.iter().map(|_| Vec::new()).collect();
    let mut deferred = Vec::new();
    let mut used = 0;
    for row in rows {
        match row.slot {
            Some(slot) if !row.deferred => {
                used += 1;
                taken[slot_owner(&slots, slot)?].push(row.job);
            }
            _ => deferred.push(row),
        }
    }
    // Slots are filled in order, so the unfilled ones are those after the claimed jobs.
    let rest: Vec<(i64, usize)> = slots
        .iter()
        .enumerate()
        .skip(used)
        .map(|(i, &c)| (i64::try_from(i + 1).unwrap_or(i64::MAX), c))
        .collect();
    if !deferred.is_empty() && !rest.is_empty() {
        for row in claim_limited(pool, deferred, &rest, claims).await? {
            taken[slot_owner(&slots, row.slot)?].push(row.job);
        }
    }
    Ok(taken
        .into_iter()
        .map(|jobs| into_jobs(jobs, true))
        .collect())
}

/// The slots of a batch: for each, the index of the claim it belongs to, dealt round-robin so
/// the first jobs of the queue are shared among the claims.
fn deal(claims: &[&ClaimRequest]) -> Vec<usize> {
    let rounds = claims.iter().map(|c| c.max_jobs).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|round| {
            claims
                .iter()
                .enumerate()
                .filter(move |(_, c)| c.max_jobs > round)
                .map(|(i, _)| i)
        })
        .collect()
}

/// The claim owning 1-based `slot`.
fn slot_owner(slots: &[usize], slot: i64) -> Result<usize> {
    usize::try_from(slot - 1)
        .ok()
        .and_then(|i| slots.get(i).copied())
        .ok_or_else(|| Error::internal(format!("a claim returned unknown slot {slot}")))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn claim(max_jobs: u32) -> ClaimRequest {
        ClaimRequest {
            agent_id: "a".into(),
            pool: "p".into(),
            labels: Labels::new(),
            max_jobs,
            lease: Duration::from_secs(30),
            holder: None,
        }
    }

    #[test]
    fn slots_are_dealt_round_robin() {
        let (a, b, c) = (claim(3), claim(1), claim(2));
        assert_eq!(deal(&[&a, &b, &c]), [0, 1, 2, 0, 2, 0]);
        assert_eq!(slot_owner(&[0, 1, 2, 0, 2, 0], 5).ok(), Some(2));
        assert!(slot_owner(&[0, 1], 3).is_err());
        assert!(slot_owner(&[0, 1], 0).is_err());
    }
}
