//! Claims on SQLite: each (tenant, pool, labels) group of a claim batch
//! ([`crate::claim_batch`]) is served in one transaction on the one connection, so counting
//! running limits and claiming cannot interleave with another writer.

use std::collections::HashMap;

use sqlx::sqlite::SqlitePool;
use switchyard_types::{ClaimRequest, Error, Job, Labels, Result, TenantId};
use uuid::Uuid;

use crate::claim_batch::{ClaimGroup, deal, hand_out};
use crate::error::from_sqlx;
use crate::limits::{Candidate, Running};
use crate::rows::{RawJob, millis};
use crate::sqlite::{SqliteJob, now_ms, to_json};

/// Whether every label of the job (`jobs.labels`) is carried, equal, by the agent (`?5`).
const LABELS_CARRIED: &str = "NOT EXISTS (SELECT 1 FROM json_each(j.labels) lbl
    WHERE json_extract(?5, '$.\"' || lbl.key || '\"') IS NOT lbl.value)";
const UNDER_LIMITS: &str = under_limits!();

/// The due jobs of pool `?1` at `?2` (of tenant `?3` when set) whose labels the claimants
/// carry (`?5`) and whose limits are not visibly reached, in claim order, at most `?4`.
fn candidates_sql() -> String {
    format!(
        "SELECT j.id, j.tenant_id, j.concurrency_key, j.concurrency_limit, l.max_running
         FROM jobs j LEFT JOIN tenant_limits l ON l.tenant_id = j.tenant_id
         WHERE j.state = 0 AND j.pool = ?1 AND j.run_at <= ?2
           AND (?3 IS NULL OR j.tenant_id = ?3) AND {LABELS_CARRIED} AND {UNDER_LIMITS}
         ORDER BY j.priority DESC, j.fair_tag, j.seq
         LIMIT ?4"
    )
}

/// Claims the queued jobs of `?2`, a JSON array of `[id, agent, lease in ms, holder]`, at `?1`.
const CLAIM_CHOSEN: &str = "
    UPDATE jobs SET state = 1, attempt = attempt + 1, claimed_by = v.agent, claimed_at = ?1,
        lease_expires_at = ?1 + v.lease_ms, holder_agent = v.holder, started_at = NULL,
        updated_at = ?1
    FROM (SELECT value ->> 0 AS id, value ->> 1 AS agent, value ->> 2 AS lease_ms,
                 value ->> 3 AS holder
          FROM json_each(?2)) AS v
    WHERE jobs.id = v.id AND jobs.state = 0
    RETURNING *";

type CandidateRow = (String, String, Option<String>, i64, Option<i64>);

impl ClaimGroup for SqlitePool {
    /// Picks up to four candidates per slot, counts what runs for those a limit applies to,
    /// and claims what fits, the n-th job for the n-th slot.
    async fn claim_group(
        &self,
        tenant: Option<&TenantId>,
        name: &str,
        labels: &Labels,
        claims: &[&ClaimRequest],
    ) -> Result<Vec<Result<Vec<Job>>>> {
        let slots = deal(claims);
        let now = now_ms();
        let mut tx = self.begin().await.map_err(from_sqlx)?;
        let rows: Vec<CandidateRow> = sqlx::query_as(sqlx::AssertSqlSafe(candidates_sql()))
            .bind(name)
            .bind(now)
            .bind(tenant.map(TenantId::as_str))
            .bind(i64::try_from(slots.len() * 4).unwrap_or(i64::MAX))
            .bind(to_json(labels))
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        let candidates = rows
            .into_iter()
            .map(
                |(id, tenant_id, concurrency_key, concurrency_limit, max_running)| {
                    Ok(Candidate {
                        id: Uuid::parse_str(&id).map_err(|_| Error::internal("corrupt job id"))?,
                        tenant_id,
                        concurrency_key,
                        concurrency_limit,
                        max_running,
                    })
                },
            )
            .collect::<Result<Vec<_>>>()?;
        let mut running = Running::default();
        if candidates.iter().any(Candidate::is_constrained) {
            let counts: Vec<(String, Option<String>, i64)> = sqlx::query_as(
                "SELECT tenant_id, concurrency_key, count(*) FROM jobs
                 WHERE state IN (1, 2) AND tenant_id IN (SELECT value FROM json_each(?1))
                 GROUP BY tenant_id, concurrency_key",
            )
            .bind(to_json(
                &candidates.iter().map(|c| &c.tenant_id).collect::<Vec<_>>(),
            ))
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            for (tenant, key, n) in &counts {
                running.add(tenant, key.as_deref(), *n);
            }
        }
        let chosen = running.choose(&candidates, slots.len());
        // The n-th chosen job (in claim order) is for the n-th slot.
        let slot_of: HashMap<Uuid, i64> = chosen.iter().zip(1..).map(|(&id, n)| (id, n)).collect();
        let assignments: Vec<serde_json::Value> = chosen
            .iter()
            .zip(&slots)
            .map(|(id, &c)| {
                let claim = claims[c];
                serde_json::json!([
                    id.to_string(),
                    claim.agent_id,
                    millis(claim.lease),
                    claim.holder.map(|h| h.to_string()),
                ])
            })
            .collect();
        let rows: Vec<SqliteJob> = sqlx::query_as(CLAIM_CHOSEN)
            .bind(now)
            .bind(serde_json::Value::Array(assignments).to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        let claimed =
            rows.into_iter()
                .map(|row| {
                    let job = RawJob::try_from(row)?;
                    let slot = slot_of.get(&job.id).copied().ok_or_else(|| {
                        Error::internal("a claim returned a job it did not choose")
                    })?;
                    Ok((slot, job))
                })
                .collect::<Result<Vec<_>>>()?;
        hand_out(&slots, claims.len(), claimed)
    }
}
