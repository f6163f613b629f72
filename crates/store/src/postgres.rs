//! The PostgreSQL adapter: claims and successful completions are group-committed (concurrent
//! ones share one statement), every other agent write is one conditional
//! `UPDATE … WHERE attempt = $n`, and every instant is the server's `now()`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, QueryBuilder};
use switchyard_types::{
    ClaimRequest, Error, Job, JobFilter, JobId, LogAppend, LogChunk, NewJob, Outcome, Priority,
    QueueStats, Result, TenantId,
};
use uuid::Uuid;

use crate::batch::Batcher;
use crate::claim_batch::{PendingClaim, claim_batch};
use crate::error::{from_migrate, from_sqlx};
use crate::rows::{Op, RawJob, db_int, explain_miss, failure_rate, into_jobs, millis};
use crate::success_batch::{self, ReadJob, Success};
use crate::{MigrationStatus, QueueStore};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The production store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Successful completions, group-committed (the hot path of every finished job).
    successes: Arc<Batcher<Success, Job>>,
    /// Claims, group-committed (see [`crate::claim_batch`] and `postgres_claim`).
    claims: Arc<Batcher<PendingClaim, Vec<Job>>>,
}

/// Completions per statement.
const BATCH_MAX: usize = 512;
/// Claims per batch (each of up to 100 jobs).
const CLAIMS_MAX: usize = 64;
/// Statements of one kind in flight at once. Two measured best: one serialises the writers,
/// four splits the batches small (docs/benchmarks.md).
const BATCHES_IN_FLIGHT: usize = 2;

impl PgStore {
    /// Connects (pool of up to 32 connections) and, when `migrate` is set, applies the embedded
    /// migrations under Postgres's advisory lock, so replicas may start at once.
    pub async fn connect(url: &str, migrate: bool) -> Result<Self> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|_| Error::invalid("database_url", "is not a valid PostgreSQL URL"))?;
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(from_sqlx)?;
        Self::from_pool(pool, migrate).await
    }

    /// Wraps an existing pool, applying migrations when `migrate` is set.
    pub async fn from_pool(pool: PgPool, migrate: bool) -> Result<Self> {
        if migrate {
            MIGRATOR.run(&pool).await.map_err(from_migrate)?;
        }
        let batch_pool = pool.clone();
        let successes = Batcher::spawn(BATCH_MAX, BATCHES_IN_FLIGHT, move |batch| {
            complete_successes(batch_pool.clone(), batch)
        });
        let batch_pool = pool.clone();
        let claims = Batcher::spawn(CLAIMS_MAX, BATCHES_IN_FLIGHT, move |batch| {
            let pool = batch_pool.clone();
            async move { claim_batch(&pool, batch).await }
        });
        Ok(PgStore {
            pool,
            successes: Arc::new(successes),
            claims: Arc::new(claims),
        })
    }

    /// The connection pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn fetch(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>> {
        self.pool.read_job(tenant, id).await
    }

    /// Runs a conditional update returning the row; explains a miss.
    async fn update_one(
        &self,
        query: sqlx::query::QueryAs<'_, Postgres, RawJob, sqlx::postgres::PgArguments>,
        tenant: &TenantId,
        id: JobId,
        op: Op,
        attempt: u32,
    ) -> Result<Job> {
        match query.fetch_optional(&self.pool).await.map_err(from_sqlx)? {
            Some(row) => Job::try_from(row),
            None => Err(explain_miss(id, self.fetch(tenant, id).await?, op, attempt)),
        }
    }
}

impl ReadJob for PgPool {
    async fn read_job(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>> {
        sqlx::query_as::<_, RawJob>("SELECT * FROM jobs_read WHERE id = $1 AND tenant_id = $2")
            .bind(id.0)
            .bind(tenant.as_str())
            .fetch_optional(self)
            .await
            .map_err(from_sqlx)?
            .map(Job::try_from)
            .transpose()
    }
}

/// Completes a batch of successes in one conditional `UPDATE … FROM UNNEST(…)`; a request whose
/// row did not match (stale attempt, wrong state, unknown) is explained one by one.
///
/// `j.id = ANY($1)` lets the planner find the rows by primary key: joined on the unnested
/// tenant alone, it may walk a tenant's whole `jobs_running` index once per row.
async fn complete_successes(pool: PgPool, batch: Vec<Success>) -> Vec<Result<Job>> {
    let writes = success_batch::distinct(&batch);
    let rows: Result<Vec<RawJob>> = sqlx::query_as(
        "UPDATE jobs j SET state = 3, finished_at = now(), exit_code = u.exit_code,
             result = u.result, lease_expires_at = NULL, updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::int[], $4::int[], $5::jsonb[])
              AS u(id, tenant_id, attempt, exit_code, result)
         WHERE j.id = ANY($1) AND j.id = u.id AND j.tenant_id = u.tenant_id
           AND j.attempt = u.attempt AND j.state IN (1, 2)
         RETURNING j.*",
    )
    .bind(writes.iter().map(|s| s.id.0).collect::<Vec<_>>())
    .bind(writes.iter().map(|s| s.tenant.as_str()).collect::<Vec<_>>())
    .bind(writes.iter().map(|s| db_int(s.attempt)).collect::<Vec<_>>())
    .bind(writes.iter().map(|s| s.exit_code).collect::<Vec<_>>())
    .bind(writes.iter().map(|s| s.result.clone()).collect::<Vec<_>>())
    .fetch_all(&pool)
    .await
    .map_err(from_sqlx);
    success_batch::answer(&batch, rows, &pool).await
}

/// The first fair tag for `tenant`'s next jobs in (pool, priority): level with the head of the
/// queue (or, when it is empty, with the busiest tenant so far), never behind the tenant's own.
const BASE_TAG: &str = "
    SELECT GREATEST(
        COALESCE(
            (SELECT fair_tag FROM jobs WHERE state = 0 AND pool = $1 AND priority = $2
             ORDER BY fair_tag LIMIT 1),
            (SELECT max(last_tag) FROM queue_fairness WHERE pool = $1 AND priority = $2),
            0),
        COALESCE(
            (SELECT last_tag + 1 FROM queue_fairness
             WHERE pool = $1 AND priority = $2 AND tenant_id = $3),
            0))";

/// Inserts jobs within the caller's transaction (see [`QueueStore::enqueue`]).
pub(crate) async fn enqueue_in(tx: &mut PgConnection, jobs: &[NewJob]) -> Result<Vec<Job>> {
    // Fair tags per (tenant, pool, priority) group, consecutive within the group.
    let mut next_tag: HashMap<(&TenantId, &str, Priority), i64> = HashMap::new();
    let mut tags = Vec::with_capacity(jobs.len());
    for job in jobs {
        let key = (&job.tenant, job.pool.as_str(), job.priority);
        let tag = match next_tag.get_mut(&key) {
            Some(t) => t,
            None => {
                let base: i64 = sqlx::query_scalar(BASE_TAG)
                    .bind(&job.pool)
                    .bind(job.priority.as_i16())
                    .bind(job.tenant.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(from_sqlx)?;
                next_tag.entry(key).or_insert(base)
            }
        };
        tags.push(*tag);
        *tag += 1;
    }
    for ((tenant, pool, priority), next) in &next_tag {
        sqlx::query(
            "INSERT INTO queue_fairness (pool, priority, tenant_id, last_tag)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (pool, priority, tenant_id)
             DO UPDATE SET last_tag = GREATEST(queue_fairness.last_tag, EXCLUDED.last_tag)",
        )
        .bind(*pool)
        .bind(priority.as_i16())
        .bind(tenant.as_str())
        .bind(next - 1)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    }

    let ids: Vec<Uuid> = jobs.iter().map(|_| JobId::new().0).collect();
    let inserted: Vec<RawJob> = sqlx::query_as(
        "INSERT INTO jobs (id, tenant_id, pool, kind, payload, priority, labels, state,
                           max_attempts, attempt_limit, timeout_ms, run_at, fair_tag,
                           idempotency_key, concurrency_key, concurrency_limit, tags)
         SELECT id, tenant_id, pool, kind, payload, priority, labels, 0,
                max_attempts, max_attempts, timeout_ms,
                COALESCE(run_at, now() + delay_ms * interval '1 millisecond'), fair_tag,
                idempotency_key, concurrency_key, concurrency_limit, tags
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                     $6::smallint[], $7::jsonb[], $8::int[], $9::bigint[],
                     $10::timestamptz[], $11::bigint[], $12::bigint[], $13::text[],
                     $14::text[], $15::int[], $16::jsonb[])
              AS t(id, tenant_id, pool, kind, payload, priority, labels, max_attempts,
                   timeout_ms, run_at, delay_ms, fair_tag, idempotency_key,
                   concurrency_key, concurrency_limit, tags)
         ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL
         DO NOTHING
         RETURNING *",
    )
    .bind(&ids)
    .bind(jobs.iter().map(|j| j.tenant.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.pool.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.payload.clone()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.priority.as_i16()).collect::<Vec<_>>())
    .bind(
        jobs.iter()
            .map(|j| serde_json::json!(j.labels))
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| db_int(j.max_attempts))
            .collect::<Vec<_>>(),
    )
    .bind(jobs.iter().map(|j| millis(j.timeout)).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| millis(j.delay)).collect::<Vec<_>>())
    .bind(&tags)
    .bind(
        jobs.iter()
            .map(|j| j.idempotency_key.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| j.concurrency_key.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| db_int(j.concurrency_limit))
            .collect::<Vec<_>>(),
    )
    .bind(
        jobs.iter()
            .map(|j| serde_json::json!(j.tags))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(from_sqlx)?;

    let mut by_id: HashMap<Uuid, RawJob> = inserted.into_iter().map(|r| (r.id, r)).collect();
    let mut out = Vec::with_capacity(jobs.len());
    for (job, id) in jobs.iter().zip(&ids) {
        let row = match by_id.remove(id) {
            Some(row) => row,
            // Not inserted: its idempotency key exists (maybe earlier in this batch).
            None => {
                sqlx::query_as("SELECT * FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2")
                    .bind(job.tenant.as_str())
                    .bind(job.idempotency_key.as_deref())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(from_sqlx)?
            }
        };
        out.push(Job::try_from(row)?);
    }
    Ok(out)
}

#[async_trait]
impl QueueStore for PgStore {
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
        let mut tx = self.pool.begin().await.map_err(from_sqlx)?;
        let out = enqueue_in(&mut tx, &jobs).await?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(out)
    }

    async fn claim(&self, tenant: Option<&TenantId>, req: &ClaimRequest) -> Result<Vec<Job>> {
        self.claims
            .submit(PendingClaim {
                tenant: tenant.cloned(),
                req: req.clone(),
            })
            .await
    }

    async fn start(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        lease: Duration,
    ) -> Result<Job> {
        let q = sqlx::query_as(
            "UPDATE jobs SET state = 2, started_at = COALESCE(started_at, now()),
                 lease_expires_at = now() + $4 * interval '1 millisecond', updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND attempt = $3 AND state IN (1, 2)
             RETURNING *",
        )
        .bind(id.0)
        .bind(tenant.as_str())
        .bind(db_int(attempt))
        .bind(millis(lease));
        self.update_one(q, tenant, id, Op::Start, attempt).await
    }

    async fn extend_lease(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        lease: Duration,
    ) -> Result<Job> {
        let q = sqlx::query_as(
            "UPDATE jobs SET lease_expires_at = now() + $4 * interval '1 millisecond'
             WHERE id = $1 AND tenant_id = $2 AND attempt = $3 AND state IN (1, 2)
             RETURNING *",
        )
        .bind(id.0)
        .bind(tenant.as_str())
        .bind(db_int(attempt))
        .bind(millis(lease));
        self.update_one(q, tenant, id, Op::Extend, attempt).await
    }

    async fn current_attempts(
        &self,
        tenant: &TenantId,
        held: &[(JobId, u32)],
    ) -> Result<Vec<JobId>> {
        let ids: Vec<Uuid> = held.iter().map(|(id, _)| id.0).collect();
        let attempts: Vec<i32> = held.iter().map(|(_, a)| db_int(*a)).collect();
        let current: Vec<Uuid> = sqlx::query_scalar(
            "SELECT j.id FROM jobs j
             JOIN UNNEST($2::uuid[], $3::int4[]) AS v(id, attempt)
               ON j.id = v.id AND j.attempt = v.attempt
             WHERE j.id = ANY($2) AND j.tenant_id = $1 AND j.state IN (1, 2)",
        )
        .bind(tenant.as_str())
        .bind(&ids)
        .bind(&attempts)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(current.into_iter().map(JobId).collect())
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        outcome: &Outcome,
        retry_delay: Duration,
    ) -> Result<Job> {
        let q = match outcome {
            Outcome::Succeeded { exit_code, result } => {
                let success = Success {
                    tenant: tenant.clone(),
                    id,
                    attempt,
                    exit_code: *exit_code,
                    result: result.clone(),
                };
                return self.successes.submit(success).await;
            }
            Outcome::Failed { exit_code, error } => sqlx::query_as(
                "UPDATE jobs SET
                     state = CASE WHEN attempt >= attempt_limit THEN 4 ELSE 0 END,
                     finished_at = CASE WHEN attempt >= attempt_limit THEN now() END,
                     run_at = CASE WHEN attempt >= attempt_limit THEN run_at
                                   ELSE now() + $6 * interval '1 millisecond' END,
                     exit_code = $4, lease_expires_at = NULL, claimed_by = NULL,
                     failures = failures || jsonb_build_array(jsonb_build_object(
                         'attempt', attempt, 'error', $5::text, 'at', now())),
                     last_failed_at = now(), updated_at = now()
                 WHERE id = $1 AND tenant_id = $2 AND attempt = $3 AND state IN (1, 2)
                 RETURNING *",
            )
            .bind(id.0)
            .bind(tenant.as_str())
            .bind(db_int(attempt))
            .bind(*exit_code)
            .bind(error.as_str())
            .bind(millis(retry_delay)),
        };
        self.update_one(q, tenant, id, Op::Complete, attempt).await
    }

    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let q = sqlx::query_as(
            "UPDATE jobs SET state = 5, finished_at = now(), lease_expires_at = NULL,
                 updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND state IN (0, 1, 2)
             RETURNING *",
        )
        .bind(id.0)
        .bind(tenant.as_str());
        self.update_one(q, tenant, id, Op::Cancel, 0).await
    }

    async fn set_priority(&self, tenant: &TenantId, id: JobId, priority: Priority) -> Result<Job> {
        let q = sqlx::query_as(
            "UPDATE jobs SET priority = $3, updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND state IN (0, 1, 2)
             RETURNING *",
        )
        .bind(id.0)
        .bind(tenant.as_str())
        .bind(priority.as_i16());
        self.update_one(q, tenant, id, Op::SetPriority, 0).await
    }

    async fn redrive(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let q = sqlx::query_as(
            "UPDATE jobs SET state = 0, attempt_limit = attempt + max_attempts,
                 redrives = redrives + 1, run_at = now(), finished_at = NULL, claimed_by = NULL,
                 updated_at = now()
             WHERE id = $1 AND tenant_id = $2 AND state = 4
             RETURNING *",
        )
        .bind(id.0)
        .bind(tenant.as_str());
        self.update_one(q, tenant, id, Op::Redrive, 0).await
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        self.fetch(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found(format_args!("job {id}")))
    }

    async fn list(&self, tenant: &TenantId, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT * FROM jobs_read WHERE tenant_id = ");
        q.push_bind(tenant.as_str());
        if let Some(state) = filter.state {
            q.push(" AND state = ").push_bind(state.as_i16());
        }
        if let Some(pool) = &filter.pool {
            q.push(" AND pool = ").push_bind(pool.as_str());
        }
        if let Some(priority) = filter.priority {
            q.push(" AND priority = ").push_bind(priority.as_i16());
        }
        if let Some(kind) = &filter.kind {
            q.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some((k, v)) = &filter.label {
            q.push(" AND labels @> ")
                .push_bind(serde_json::json!({ k: v }));
        }
        if let Some(after) = filter.after {
            q.push(" AND id < ").push_bind(after.0);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows: Vec<RawJob> = q
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        into_jobs(rows, false)
    }

    async fn has_due_jobs(&self, tenant: &TenantId, pool: &str) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs
                            WHERE pool = $2 AND state = 0 AND tenant_id = $1 AND run_at <= now())",
        )
        .bind(tenant.as_str())
        .bind(pool)
        .fetch_one(self.pool())
        .await
        .map_err(from_sqlx)
    }

    async fn stats(&self, tenant: &TenantId, window: Duration) -> Result<Vec<QueueStats>> {
        let rows: Vec<StatsRow> = sqlx::query_as(STATS)
            .bind(tenant.as_str())
            .bind(millis(window))
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        Ok(rows.into_iter().map(StatsRow::into_stats).collect())
    }

    async fn reap_expired(&self, limit: u32, retry_delay: Duration) -> Result<Vec<Job>> {
        let rows: Vec<RawJob> = sqlx::query_as(
            "WITH expired AS (
                 SELECT id FROM jobs j
                 WHERE state IN (1, 2) AND lease_expires_at < now()
                   AND NOT EXISTS (SELECT 1 FROM agents a
                                   WHERE a.id = j.holder_agent AND a.lease_until > now())
                 ORDER BY lease_expires_at
                 LIMIT $1
                 FOR UPDATE OF j SKIP LOCKED)
             UPDATE jobs j SET
                 state = CASE WHEN j.attempt >= j.attempt_limit THEN 4 ELSE 0 END,
                 finished_at = CASE WHEN j.attempt >= j.attempt_limit THEN now() END,
                 run_at = CASE WHEN j.attempt >= j.attempt_limit THEN j.run_at
                               ELSE now() + $2 * interval '1 millisecond' END,
                 lease_expires_at = NULL, claimed_by = NULL,
                 failures = j.failures || jsonb_build_array(jsonb_build_object(
                     'attempt', j.attempt, 'error', 'lease expired', 'at', now())),
                 last_failed_at = now(), updated_at = now()
             FROM expired
             WHERE j.id = expired.id AND j.state IN (1, 2) AND j.lease_expires_at < now()
             RETURNING j.*",
        )
        .bind(i64::from(limit))
        .bind(millis(retry_delay))
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        into_jobs(rows, false)
    }

    async fn grant_restart_grace(&self, grace: Duration) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = now() + $1 * interval '1 millisecond'
             WHERE state IN (1, 2) AND lease_expires_at < now()",
        )
        .bind(millis(grace))
        .execute(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(done.rows_affected())
    }

    async fn set_tenant_limit(&self, tenant: &TenantId, max_running: Option<u32>) -> Result<()> {
        let q = match max_running {
            Some(n) => sqlx::query(
                "INSERT INTO tenant_limits (tenant_id, max_running) VALUES ($1, $2)
                 ON CONFLICT (tenant_id) DO UPDATE SET max_running = excluded.max_running",
            )
            .bind(tenant.as_str())
            .bind(db_int(n)),
            None => {
                sqlx::query("DELETE FROM tenant_limits WHERE tenant_id = $1").bind(tenant.as_str())
            }
        };
        q.execute(&self.pool).await.map_err(from_sqlx).map(|_| ())
    }

    async fn tenant_limit(&self, tenant: &TenantId) -> Result<Option<u32>> {
        let n: Option<i32> =
            sqlx::query_scalar("SELECT max_running FROM tenant_limits WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(from_sqlx)?;
        Ok(n.and_then(|n| u32::try_from(n).ok()))
    }

    async fn append_log(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        seq: u64,
        data: &str,
    ) -> Result<LogAppend> {
        self.append_log_pg(tenant, id, attempt, seq, data).await
    }

    async fn logs(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: Option<u32>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogChunk>> {
        self.logs_pg(tenant, id, attempt, after, limit).await
    }

    async fn report_progress(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        percent: u8,
    ) -> Result<()> {
        self.report_progress_pg(tenant, id, attempt, percent).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)
            .map(|_| ())
    }

    async fn migrations(&self) -> Result<MigrationStatus> {
        let applied: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM _sqlx_migrations WHERE success AND version = ANY($1)",
        )
        .bind(MIGRATOR.iter().map(|m| m.version).collect::<Vec<_>>())
        .fetch_one(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(MigrationStatus {
            known: MIGRATOR.iter().count(),
            applied: usize::try_from(applied).unwrap_or(0),
        })
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

/// Current counts from leased and queued rows; windowed figures from rows touched within the
/// window. Percentiles by `percentile_cont`.
const STATS: &str = "
    WITH w AS (SELECT now() - $2 * interval '1 millisecond' AS since)
    SELECT pool, priority,
        count(*) FILTER (WHERE state = 0) AS queued,
        count(*) FILTER (WHERE state = 1) AS claimed,
        count(*) FILTER (WHERE state = 2) AS running,
        count(*) FILTER (WHERE state = 3 AND finished_at > w.since) AS completed,
        count(*) FILTER (WHERE last_failed_at > w.since) AS failed,
        count(*) FILTER (WHERE state = 4 AND finished_at > w.since) AS dead_lettered,
        avg(extract(epoch FROM claimed_at - run_at)) FILTER (WHERE claimed_at > w.since AND state <> 0)::float8
            AS wait_avg,
        (percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM claimed_at - run_at))
            FILTER (WHERE claimed_at > w.since AND state <> 0))::float8 AS wait_p95,
        avg(extract(epoch FROM finished_at - started_at))
            FILTER (WHERE state = 3 AND finished_at > w.since)::float8 AS run_avg,
        (percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
            FILTER (WHERE state = 3 AND finished_at > w.since))::float8 AS run_p95,
        extract(epoch FROM now() - min(run_at) FILTER (WHERE state = 0 AND run_at <= now()))::float8
            AS oldest_age
    FROM jobs, w
    WHERE tenant_id = $1
      AND (state IN (0, 1, 2) OR finished_at > w.since OR claimed_at > w.since
           OR last_failed_at > w.since)
    GROUP BY pool, priority
    ORDER BY pool, priority DESC";

#[derive(sqlx::FromRow)]
struct StatsRow {
    pool: String,
    priority: i16,
    queued: i64,
    claimed: i64,
    running: i64,
    completed: i64,
    failed: i64,
    dead_lettered: i64,
    wait_avg: Option<f64>,
    wait_p95: Option<f64>,
    run_avg: Option<f64>,
    run_p95: Option<f64>,
    oldest_age: Option<f64>,
}

impl StatsRow {
    fn into_stats(self) -> QueueStats {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let (completed, failed) = (n(self.completed), n(self.failed));
        QueueStats {
            pool: self.pool,
            priority: Priority::from_i16(self.priority),
            queued: n(self.queued),
            claimed: n(self.claimed),
            running: n(self.running),
            completed,
            failed,
            dead_lettered: n(self.dead_lettered),
            wait_avg_seconds: self.wait_avg.unwrap_or(0.0),
            wait_p95_seconds: self.wait_p95.unwrap_or(0.0),
            run_avg_seconds: self.run_avg.unwrap_or(0.0),
            run_p95_seconds: self.run_p95.unwrap_or(0.0),
            failure_rate: failure_rate(completed, failed),
            oldest_queued_age_seconds: self.oldest_age.unwrap_or(0.0).max(0.0),
        }
    }
}
