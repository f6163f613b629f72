//! The embedded SQLite adapter (`switchyard dev`, single node). One connection in WAL mode does
//! every read and write, so each statement and transaction is serialised; claims are one
//! `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING *`. SQLite runs inside this process, so
//! the database clock is this process's clock: instants are read once per operation and bound.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use switchyard_types::{
    ClaimRequest, Error, Job, JobFilter, JobId, JobState, LogAppend, LogChunk, NewJob, Outcome,
    Priority, QueueStats, Result, TenantId,
};
use uuid::Uuid;

use crate::batch::Batcher;
use crate::claim_batch::{PendingClaim, claim_batch};
use crate::error::{from_migrate, from_sqlx};
use crate::rows::{Op, RawJob, db_int, explain_miss, failure_rate, into_jobs, millis};
use crate::success_batch::{self, ReadJob, Success};
use crate::{MigrationStatus, QueueStore};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The embedded store on a SQLite file (or `sqlite::memory:` for tests).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one connection (shared with the identity store in `sqlite_identity`).
    pub(crate) pool: SqlitePool,
    /// Successful completions, group-committed (the hot path of every finished job).
    successes: Arc<Batcher<Success, Job>>,
    /// Claims, group-committed (see [`crate::claim_batch`] and `sqlite_claim`).
    claims: Arc<Batcher<PendingClaim, Vec<Job>>>,
}

/// Completions per statement.
const BATCH_MAX: usize = 512;
/// Claims per batch (each of up to 100 jobs).
const CLAIMS_MAX: usize = 64;

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://./.switchyard/db.sqlite`,
    /// and applies migrations when `migrate` is set.
    pub async fn connect(url: &str, migrate: bool) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| Error::invalid("database_url", "is not a valid SQLite URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a committed transaction survives a crash of this process.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // An in-memory database lives as long as its one connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(from_sqlx)?;
        if migrate {
            MIGRATOR.run(&pool).await.map_err(from_migrate)?;
        }
        // One connection: one batch of each kind at a time.
        let batch_pool = pool.clone();
        let successes = Batcher::spawn(BATCH_MAX, 1, move |batch| {
            complete_successes(batch_pool.clone(), batch)
        });
        let batch_pool = pool.clone();
        let claims = Batcher::spawn(CLAIMS_MAX, 1, move |batch| {
            let pool = batch_pool.clone();
            async move { claim_batch(&pool, batch).await }
        });
        Ok(SqliteStore {
            pool,
            successes: Arc::new(successes),
            claims: Arc::new(claims),
        })
    }

    pub(crate) async fn fetch(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>> {
        self.pool.read_job(tenant, id).await
    }

    async fn update_one(
        &self,
        query: sqlx::query::QueryAs<'_, Sqlite, SqliteJob, sqlx::sqlite::SqliteArguments>,
        tenant: &TenantId,
        id: JobId,
        op: Op,
        attempt: u32,
    ) -> Result<Job> {
        match query.fetch_optional(&self.pool).await.map_err(from_sqlx)? {
            Some(row) => Job::try_from(RawJob::try_from(row)?),
            None => Err(explain_miss(id, self.fetch(tenant, id).await?, op, attempt)),
        }
    }
}

impl ReadJob for SqlitePool {
    async fn read_job(&self, tenant: &TenantId, id: JobId) -> Result<Option<Job>> {
        sqlx::query_as::<_, SqliteJob>("SELECT * FROM jobs_read WHERE id = ? AND tenant_id = ?")
            .bind(id.to_string())
            .bind(tenant.as_str())
            .fetch_optional(self)
            .await
            .map_err(from_sqlx)?
            .map(|r| Job::try_from(RawJob::try_from(r)?))
            .transpose()
    }
}

/// Completes a batch of successes in one conditional `UPDATE … FROM json_each(…)`; a request
/// whose row did not match (stale attempt, wrong state, unknown) is explained one by one.
async fn complete_successes(pool: SqlitePool, batch: Vec<Success>) -> Vec<Result<Job>> {
    let requests: Vec<serde_json::Value> = success_batch::distinct(&batch)
        .into_iter()
        .map(|s| {
            serde_json::json!([
                s.id.to_string(),
                s.tenant.as_str(),
                s.attempt,
                s.exit_code,
                s.result.as_ref().map(to_json),
            ])
        })
        .collect();
    let rows: Result<Vec<RawJob>> = sqlx::query_as::<_, SqliteJob>(
        "UPDATE jobs SET state = 3, finished_at = ?1, exit_code = u.exit_code, result = u.result,
             lease_expires_at = NULL, updated_at = ?1
         FROM (SELECT value ->> 0 AS id, value ->> 1 AS tenant_id, value ->> 2 AS attempt,
                      value ->> 3 AS exit_code, value ->> 4 AS result
               FROM json_each(?2)) AS u
         WHERE jobs.id = u.id AND jobs.tenant_id = u.tenant_id AND jobs.attempt = u.attempt
           AND jobs.state IN (1, 2)
         RETURNING *",
    )
    .bind(now_ms())
    .bind(serde_json::Value::Array(requests).to_string())
    .fetch_all(&pool)
    .await
    .map_err(from_sqlx)
    .and_then(|rows| rows.into_iter().map(RawJob::try_from).collect());
    success_batch::answer(&batch, rows, &pool).await
}

/// Now, as stored: integer milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn failure_entry(attempt: u32, error: &str, now: i64) -> String {
    let at = DateTime::<Utc>::from_timestamp_millis(now).unwrap_or_default();
    to_json(&serde_json::json!([{ "attempt": attempt, "error": error, "at": at }]))
}

/// A job row as SQLite stores it; converted to [`RawJob`].
#[derive(sqlx::FromRow)]
pub(crate) struct SqliteJob {
    seq: i64,
    id: String,
    tenant_id: String,
    pool: String,
    kind: String,
    payload: String,
    priority: i64,
    labels: String,
    tags: String,
    state: i64,
    attempt: i64,
    max_attempts: i64,
    attempt_limit: i64,
    timeout_ms: i64,
    run_at: i64,
    fair_tag: i64,
    idempotency_key: Option<String>,
    concurrency_key: Option<String>,
    concurrency_limit: i64,
    claimed_by: Option<String>,
    claimed_at: Option<i64>,
    lease_expires_at: Option<i64>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    exit_code: Option<i64>,
    result: Option<String>,
    failures: String,
    redrives: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<SqliteJob> for RawJob {
    type Error = Error;

    fn try_from(r: SqliteJob) -> Result<RawJob> {
        let corrupt = |what: &str| Error::internal(format!("corrupt {what} in job {}", r.id));
        let json = |s: &str, what: &str| serde_json::from_str(s).map_err(|_| corrupt(what));
        let at =
            |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(|| corrupt("instant"));
        let opt_at = |ms: Option<i64>| ms.map(at).transpose();
        let small = |n: i64| i32::try_from(n).map_err(|_| corrupt("integer"));
        Ok(RawJob {
            id: Uuid::parse_str(&r.id).map_err(|_| corrupt("id"))?,
            seq: r.seq,
            payload: json(&r.payload, "payload")?,
            labels: json(&r.labels, "labels")?,
            tags: json(&r.tags, "tags")?,
            failures: json(&r.failures, "failures")?,
            result: r.result.as_deref().map(|s| json(s, "result")).transpose()?,
            priority: i16::try_from(r.priority).map_err(|_| corrupt("priority"))?,
            state: i16::try_from(r.state).map_err(|_| corrupt("state"))?,
            attempt: small(r.attempt)?,
            max_attempts: small(r.max_attempts)?,
            attempt_limit: small(r.attempt_limit)?,
            concurrency_limit: small(r.concurrency_limit)?,
            redrives: small(r.redrives)?,
            exit_code: r.exit_code.map(small).transpose()?,
            timeout_ms: r.timeout_ms,
            run_at: at(r.run_at)?,
            claimed_at: opt_at(r.claimed_at)?,
            lease_expires_at: opt_at(r.lease_expires_at)?,
            started_at: opt_at(r.started_at)?,
            finished_at: opt_at(r.finished_at)?,
            created_at: at(r.created_at)?,
            updated_at: at(r.updated_at)?,
            fair_tag: r.fair_tag,
            tenant_id: r.tenant_id,
            pool: r.pool,
            kind: r.kind,
            idempotency_key: r.idempotency_key,
            concurrency_key: r.concurrency_key,
            claimed_by: r.claimed_by,
        })
    }
}

fn convert(rows: Vec<SqliteJob>, sort_for_claim: bool) -> Result<Vec<Job>> {
    let raw = rows
        .into_iter()
        .map(RawJob::try_from)
        .collect::<Result<Vec<_>>>()?;
    into_jobs(raw, sort_for_claim)
}

/// See the PostgreSQL adapter's `BASE_TAG`: the same rule in SQLite's dialect.
const BASE_TAG: &str = "
    SELECT max(
        COALESCE(
            (SELECT fair_tag FROM jobs WHERE state = 0 AND pool = ?1 AND priority = ?2
             ORDER BY fair_tag LIMIT 1),
            (SELECT max(last_tag) FROM queue_fairness WHERE pool = ?1 AND priority = ?2),
            0),
        COALESCE(
            (SELECT last_tag + 1 FROM queue_fairness
             WHERE pool = ?1 AND priority = ?2 AND tenant_id = ?3),
            0))";

/// Inserts jobs within the caller's transaction (see [`QueueStore::enqueue`]).
pub(crate) async fn enqueue_in(tx: &mut SqliteConnection, jobs: &[NewJob]) -> Result<Vec<Job>> {
    let now = now_ms();
    let mut next_tag: HashMap<(&TenantId, &str, Priority), i64> = HashMap::new();
    let mut out = Vec::with_capacity(jobs.len());
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
        let run_at = job
            .run_at
            .map_or(now + millis(job.delay), |t| t.timestamp_millis());
        let inserted: Option<SqliteJob> = sqlx::query_as(
            "INSERT INTO jobs (id, tenant_id, pool, kind, payload, priority, labels, tags,
                               state, max_attempts, attempt_limit, timeout_ms, run_at,
                               fair_tag, idempotency_key, concurrency_key,
                               concurrency_limit, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING
             RETURNING *",
        )
        .bind(JobId::new().to_string())
        .bind(job.tenant.as_str())
        .bind(&job.pool)
        .bind(&job.kind)
        .bind(to_json(&job.payload))
        .bind(job.priority.as_i16())
        .bind(to_json(&job.labels))
        .bind(to_json(&job.tags))
        .bind(db_int(job.max_attempts))
        .bind(db_int(job.max_attempts))
        .bind(millis(job.timeout))
        .bind(run_at)
        .bind(*tag)
        .bind(job.idempotency_key.as_deref())
        .bind(job.concurrency_key.as_deref())
        .bind(db_int(job.concurrency_limit))
        .bind(now)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let row = match inserted {
            Some(row) => {
                *tag += 1;
                row
            }
            None => {
                sqlx::query_as("SELECT * FROM jobs WHERE tenant_id = ? AND idempotency_key = ?")
                    .bind(job.tenant.as_str())
                    .bind(job.idempotency_key.as_deref())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(from_sqlx)?
            }
        };
        out.push(Job::try_from(RawJob::try_from(row)?)?);
    }
    for ((tenant, pool, priority), next) in &next_tag {
        sqlx::query(
            "INSERT INTO queue_fairness (pool, priority, tenant_id, last_tag) VALUES (?, ?, ?, ?)
             ON CONFLICT (pool, priority, tenant_id)
             DO UPDATE SET last_tag = max(last_tag, excluded.last_tag)",
        )
        .bind(*pool)
        .bind(priority.as_i16())
        .bind(tenant.as_str())
        .bind(next - 1)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    }
    Ok(out)
}

#[async_trait]
impl QueueStore for SqliteStore {
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
        let now = now_ms();
        let q = sqlx::query_as(
            "UPDATE jobs SET state = 2, started_at = COALESCE(started_at, ?4),
                 lease_expires_at = ?4 + ?5, updated_at = ?4
             WHERE id = ?1 AND tenant_id = ?2 AND attempt = ?3 AND state IN (1, 2)
             RETURNING *",
        )
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(db_int(attempt))
        .bind(now)
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
            "UPDATE jobs SET lease_expires_at = ?4
             WHERE id = ?1 AND tenant_id = ?2 AND attempt = ?3 AND state IN (1, 2)
             RETURNING *",
        )
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(db_int(attempt))
        .bind(now_ms() + millis(lease));
        self.update_one(q, tenant, id, Op::Extend, attempt).await
    }

    async fn current_attempts(
        &self,
        tenant: &TenantId,
        held: &[(JobId, u32)],
    ) -> Result<Vec<JobId>> {
        let pairs: Vec<serde_json::Value> = held
            .iter()
            .map(|(id, attempt)| serde_json::json!([id.to_string(), attempt]))
            .collect();
        let current: Vec<String> = sqlx::query_scalar(
            "SELECT j.id FROM jobs j
             JOIN json_each(?2) AS v
               ON j.id = json_extract(v.value, '$[0]') AND j.attempt = json_extract(v.value, '$[1]')
             WHERE j.tenant_id = ?1 AND j.state IN (1, 2)",
        )
        .bind(tenant.as_str())
        .bind(serde_json::Value::Array(pairs).to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        current
            .iter()
            .map(|id| {
                Uuid::parse_str(id)
                    .map(JobId)
                    .map_err(|_| Error::internal("a stored job id is not a UUID"))
            })
            .collect()
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        outcome: &Outcome,
        retry_delay: Duration,
    ) -> Result<Job> {
        let now = now_ms();
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
                     finished_at = CASE WHEN attempt >= attempt_limit THEN ?4 END,
                     run_at = CASE WHEN attempt >= attempt_limit THEN run_at ELSE ?4 + ?7 END,
                     exit_code = ?5, lease_expires_at = NULL, claimed_by = NULL,
                     failures = json_insert(failures, '$[#]', json_extract(?6, '$[0]')),
                     last_failed_at = ?4, updated_at = ?4
                 WHERE id = ?1 AND tenant_id = ?2 AND attempt = ?3 AND state IN (1, 2)
                 RETURNING *",
            )
            .bind(id.to_string())
            .bind(tenant.as_str())
            .bind(db_int(attempt))
            .bind(now)
            .bind(*exit_code)
            .bind(failure_entry(attempt, error, now))
            .bind(millis(retry_delay)),
        };
        self.update_one(q, tenant, id, Op::Complete, attempt).await
    }

    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let q = sqlx::query_as(
            "UPDATE jobs SET state = 5, finished_at = ?3, lease_expires_at = NULL, updated_at = ?3
             WHERE id = ?1 AND tenant_id = ?2 AND state IN (0, 1, 2)
             RETURNING *",
        )
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(now_ms());
        self.update_one(q, tenant, id, Op::Cancel, 0).await
    }

    async fn set_priority(&self, tenant: &TenantId, id: JobId, priority: Priority) -> Result<Job> {
        let q = sqlx::query_as(
            "UPDATE jobs SET priority = ?3, updated_at = ?4
             WHERE id = ?1 AND tenant_id = ?2 AND state IN (0, 1, 2)
             RETURNING *",
        )
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(priority.as_i16())
        .bind(now_ms());
        self.update_one(q, tenant, id, Op::SetPriority, 0).await
    }

    async fn redrive(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        let q = sqlx::query_as(
            "UPDATE jobs SET state = 0, attempt_limit = attempt + max_attempts,
                 redrives = redrives + 1, run_at = ?3, finished_at = NULL, claimed_by = NULL,
                 updated_at = ?3
             WHERE id = ?1 AND tenant_id = ?2 AND state = 4
             RETURNING *",
        )
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(now_ms());
        self.update_one(q, tenant, id, Op::Redrive, 0).await
    }

    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job> {
        self.fetch(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found(format_args!("job {id}")))
    }

    async fn list(&self, tenant: &TenantId, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM jobs_read WHERE tenant_id = ");
        q.push_bind(tenant.as_str());
        if let Some(state) = filter.state {
            q.push(" AND state = ").push_bind(state.as_i16());
        }
        if let Some(pool) = &filter.pool {
            q.push(" AND pool = ").push_bind(pool.clone());
        }
        if let Some(priority) = filter.priority {
            q.push(" AND priority = ").push_bind(priority.as_i16());
        }
        if let Some(kind) = &filter.kind {
            q.push(" AND kind = ").push_bind(kind.clone());
        }
        if let Some((k, v)) = &filter.label {
            q.push(" AND json_extract(labels, ")
                .push_bind(format!("$.\"{k}\""));
            q.push(") = ").push_bind(v.clone());
        }
        if let Some(after) = filter.after {
            q.push(" AND id < ").push_bind(after.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows: Vec<SqliteJob> = q
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        convert(rows, false)
    }

    async fn has_due_jobs(&self, tenant: &TenantId, pool: &str) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs
                            WHERE pool = ?2 AND state = 0 AND tenant_id = ?1 AND run_at <= ?3)",
        )
        .bind(tenant.as_str())
        .bind(pool)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(from_sqlx)
    }

    async fn stats(&self, tenant: &TenantId, window: Duration) -> Result<Vec<QueueStats>> {
        let now = now_ms();
        let since = now - millis(window);
        let rows: Vec<StatsRow> = sqlx::query_as(
            "SELECT pool, priority, state, run_at, claimed_at, started_at, finished_at, last_failed_at
             FROM jobs
             WHERE tenant_id = ?1 AND (state IN (0, 1, 2) OR finished_at > ?2
                                       OR claimed_at > ?2 OR last_failed_at > ?2)",
        )
        .bind(tenant.as_str())
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(aggregate(rows, now, since))
    }

    async fn reap_expired(&self, limit: u32, retry_delay: Duration) -> Result<Vec<Job>> {
        let now = now_ms();
        let entry = failure_entry(0, "lease expired", now);
        let rows: Vec<SqliteJob> = sqlx::query_as(
            "UPDATE jobs SET
                 state = CASE WHEN attempt >= attempt_limit THEN 4 ELSE 0 END,
                 finished_at = CASE WHEN attempt >= attempt_limit THEN ?1 END,
                 run_at = CASE WHEN attempt >= attempt_limit THEN run_at ELSE ?1 + ?3 END,
                 lease_expires_at = NULL, claimed_by = NULL,
                 failures = json_insert(failures, '$[#]',
                     json_set(json_extract(?4, '$[0]'), '$.attempt', attempt)),
                 last_failed_at = ?1, updated_at = ?1
             WHERE id IN (SELECT id FROM jobs j
                          WHERE state IN (1, 2) AND lease_expires_at < ?1
                            AND NOT EXISTS (SELECT 1 FROM agents a
                                            WHERE a.id = j.holder_agent AND a.lease_until > ?1)
                          ORDER BY lease_expires_at LIMIT ?2)
             RETURNING *",
        )
        .bind(now)
        .bind(i64::from(limit))
        .bind(millis(retry_delay))
        .bind(entry)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        convert(rows, false)
    }

    async fn grant_restart_grace(&self, grace: Duration) -> Result<u64> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = ?1 + ?2
             WHERE state IN (1, 2) AND lease_expires_at < ?1",
        )
        .bind(now)
        .bind(millis(grace))
        .execute(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(done.rows_affected())
    }

    async fn set_tenant_limit(&self, tenant: &TenantId, max_running: Option<u32>) -> Result<()> {
        let q = match max_running {
            Some(n) => sqlx::query(
                "INSERT INTO tenant_limits (tenant_id, max_running) VALUES (?1, ?2)
                 ON CONFLICT (tenant_id) DO UPDATE SET max_running = excluded.max_running",
            )
            .bind(tenant.as_str())
            .bind(db_int(n)),
            None => {
                sqlx::query("DELETE FROM tenant_limits WHERE tenant_id = ?1").bind(tenant.as_str())
            }
        };
        q.execute(&self.pool).await.map_err(from_sqlx).map(|_| ())
    }

    async fn tenant_limit(&self, tenant: &TenantId) -> Result<Option<u32>> {
        let n: Option<i32> =
            sqlx::query_scalar("SELECT max_running FROM tenant_limits WHERE tenant_id = ?1")
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
        self.append_log_sqlite(tenant, id, attempt, seq, data).await
    }

    async fn logs(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: Option<u32>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogChunk>> {
        self.logs_sqlite(tenant, id, attempt, after, limit).await
    }

    async fn report_progress(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        percent: u8,
    ) -> Result<()> {
        self.report_progress_sqlite(tenant, id, attempt, percent)
            .await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)
            .map(|_| ())
    }

    async fn migrations(&self) -> Result<MigrationStatus> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
                .fetch_all(&self.pool)
                .await
                .map_err(from_sqlx)?;
        Ok(MigrationStatus {
            known: MIGRATOR.iter().count(),
            applied: MIGRATOR
                .iter()
                .filter(|m| applied.contains(&m.version))
                .count(),
        })
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[derive(sqlx::FromRow)]
struct StatsRow {
    pool: String,
    priority: i64,
    state: i64,
    run_at: i64,
    claimed_at: Option<i64>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    last_failed_at: Option<i64>,
}

/// Mean and 95th percentile (nearest rank) of `samples`, in seconds from milliseconds.
fn mean_p95(mut samples: Vec<i64>) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<i64>() as f64 / samples.len() as f64;
    let rank = ((samples.len() as f64) * 0.95).ceil() as usize;
    let p95 = samples[rank.clamp(1, samples.len()) - 1] as f64;
    (mean / 1000.0, p95 / 1000.0)
}

fn aggregate(rows: Vec<StatsRow>, now: i64, since: i64) -> Vec<QueueStats> {
    #[derive(Default)]
    struct Acc {
        stats: QueueStats,
        waits: Vec<i64>,
        runs: Vec<i64>,
        oldest_due: Option<i64>,
    }
    let mut groups: BTreeMap<(String, std::cmp::Reverse<i64>), Acc> = BTreeMap::new();
    for r in rows {
        let acc = groups
            .entry((r.pool.clone(), std::cmp::Reverse(r.priority)))
            .or_default();
        let state = i16::try_from(r.state).ok().and_then(JobState::from_i16);
        let recent = |t: Option<i64>| t.is_some_and(|t| t > since);
        match state {
            Some(JobState::Queued) => {
                acc.stats.queued += 1;
                if r.run_at <= now {
                    acc.oldest_due = Some(acc.oldest_due.map_or(r.run_at, |o| o.min(r.run_at)));
                }
            }
            Some(JobState::Claimed) => acc.stats.claimed += 1,
            Some(JobState::Running) => acc.stats.running += 1,
            Some(JobState::Completed) if recent(r.finished_at) => {
                acc.stats.completed += 1;
                if let (Some(s), Some(f)) = (r.started_at, r.finished_at) {
                    acc.runs.push(f - s);
                }
            }
            Some(JobState::DeadLettered) if recent(r.finished_at) => acc.stats.dead_lettered += 1,
            Some(JobState::Completed | JobState::DeadLettered | JobState::Cancelled) | None => {}
        }
        if recent(r.last_failed_at) {
            acc.stats.failed += 1;
        }
        // A queued job's run_at is its next due time, not the one its last claim waited for.
        if let Some(c) = r
            .claimed_at
            .filter(|c| *c > since && state != Some(JobState::Queued))
        {
            acc.waits.push(c - r.run_at);
        }
        acc.stats.pool = r.pool;
        acc.stats.priority = i16::try_from(r.priority).ok().and_then(Priority::from_i16);
    }
    groups
        .into_values()
        .map(|mut acc| {
            (acc.stats.wait_avg_seconds, acc.stats.wait_p95_seconds) = mean_p95(acc.waits);
            (acc.stats.run_avg_seconds, acc.stats.run_p95_seconds) = mean_p95(acc.runs);
            acc.stats.failure_rate = failure_rate(acc.stats.completed, acc.stats.failed);
            acc.stats.oldest_queued_age_seconds = acc
                .oldest_due
                .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
            acc.stats
        })
        .collect()
}
