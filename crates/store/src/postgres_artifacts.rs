//! Artifacts' records on PostgreSQL. Every instant is the database's `now()`; the sweeper's claim
//! skips rows another replica holds (`FOR UPDATE SKIP LOCKED`), so no two replicas claim one
//! artifact.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use switchyard_types::{
    Artifact, ArtifactFilter, ArtifactId, ArtifactState, Job, JobId, NewArtifact, NewJob, Result,
    TenantId,
};
use uuid::Uuid;

use crate::artifact_rows::{
    ARTIFACT_COLUMNS, ArtifactRow, db_size, no_artifact, no_tenant, the_job,
};
use crate::artifacts::ArtifactStore;
use crate::deployment_rows::Pg;
use crate::error::from_sqlx;
use crate::postgres::{PgStore, enqueue_in};
use crate::rows::{duration_ms, millis};

type Row = ArtifactRow<Uuid, DateTime<Utc>>;

#[async_trait]
impl ArtifactStore for PgStore {
    async fn create_upload(
        &self,
        job: &NewJob,
        artifacts: &[NewArtifact],
        default_retention: Duration,
    ) -> Result<(Job, Vec<Artifact>)> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        let policy: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT r.retention_ms FROM tenants t
             LEFT JOIN artifact_retention r ON r.tenant_id = t.id WHERE t.id = $1",
        )
        .bind(job.tenant.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let retention_ms = policy
            .ok_or_else(|| no_tenant(&job.tenant))?
            .unwrap_or_else(|| millis(default_retention));
        let job = the_job(enqueue_in(&mut tx, std::slice::from_ref(job)).await?)?;
        let mut stored = Vec::with_capacity(artifacts.len());
        for a in artifacts {
            let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO artifacts (id, tenant_id, job_id, name, content_type, sha256, size,
                                        storage_key, state, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(),
                         now() + $10 * interval '1 millisecond')
                 RETURNING {ARTIFACT_COLUMNS}"
            )))
            .bind(a.id.0)
            .bind(job.tenant.as_str())
            .bind(job.id.0)
            .bind(&a.name)
            .bind(&a.content_type)
            .bind(&a.sha256)
            .bind(db_size(a)?)
            .bind(&a.storage_key)
            .bind(ArtifactState::Stored.as_i16())
            .bind(retention_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            stored.push(row.decode::<Pg>()?);
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok((job, stored))
    }

    async fn retention(&self, tenant: &TenantId) -> Result<Option<Duration>> {
        let ms: Option<i64> =
            sqlx::query_scalar("SELECT retention_ms FROM artifact_retention WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_optional(self.pool())
                .await
                .map_err(from_sqlx)?;
        Ok(ms.map(duration_ms))
    }

    async fn set_retention(
        &self,
        tenant: &TenantId,
        policy: Option<Duration>,
        default_retention: Duration,
    ) -> Result<u64> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        if found.is_none() {
            return Err(no_tenant(tenant));
        }
        let set = match policy {
            Some(p) => sqlx::query(
                "INSERT INTO artifact_retention (tenant_id, retention_ms) VALUES ($1, $2)
                 ON CONFLICT (tenant_id) DO UPDATE SET retention_ms = excluded.retention_ms",
            )
            .bind(tenant.as_str())
            .bind(millis(p).max(1)),
            None => sqlx::query("DELETE FROM artifact_retention WHERE tenant_id = $1")
                .bind(tenant.as_str()),
        };
        set.execute(&mut *tx).await.map_err(from_sqlx)?;
        let redated = sqlx::query(
            "UPDATE artifacts SET expires_at = created_at + $2 * interval '1 millisecond'
             WHERE tenant_id = $1 AND state = $3",
        )
        .bind(tenant.as_str())
        .bind(millis(policy.unwrap_or(default_retention)).max(1))
        .bind(ArtifactState::Stored.as_i16())
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(redated.rows_affected())
    }

    async fn artifact(&self, tenant: &TenantId, id: ArtifactId) -> Result<Artifact> {
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id = $1 AND tenant_id = $2"
        )))
        .bind(id.0)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| no_artifact(id))?.decode::<Pg>()
    }

    async fn artifacts(&self, tenant: &TenantId, filter: &ArtifactFilter) -> Result<Vec<Artifact>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR job_id = $2)
               AND ($3::uuid IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        )))
        .bind(tenant.as_str())
        .bind(filter.job.map(|j| j.0))
        .bind(filter.before.map(|b| b.0))
        .bind(i64::from(filter.limit))
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(Row::decode::<Pg>).collect()
    }

    async fn due_expirations(&self, limit: u32, lease: Duration) -> Result<Vec<Artifact>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH due AS (
                 SELECT id FROM artifacts
                 WHERE state = $1 AND expires_at <= now()
                   AND (sweep_until IS NULL OR sweep_until <= now())
                 ORDER BY expires_at, id
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), claimed AS (
                 UPDATE artifacts a SET sweep_until = now() + $3 * interval '1 millisecond'
                 FROM due WHERE a.id = due.id
                 RETURNING a.*
             )
             SELECT {ARTIFACT_COLUMNS} FROM claimed ORDER BY expires_at, id"
        )))
        .bind(ArtifactState::Stored.as_i16())
        .bind(i64::from(limit))
        .bind(millis(lease))
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(Row::decode::<Pg>).collect()
    }

    async fn mark_expired(&self, id: ArtifactId) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE artifacts SET state = $2, expired_at = now(), sweep_until = NULL
             WHERE id = $1 AND state = $3",
        )
        .bind(id.0)
        .bind(ArtifactState::Expired.as_i16())
        .bind(ArtifactState::Stored.as_i16())
        .execute(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn unrecorded_keys(&self, keys: &[String]) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT k.key FROM unnest($1::text[]) WITH ORDINALITY AS k(key, n)
             WHERE NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.storage_key = k.key)
             ORDER BY k.n",
        )
        .bind(keys)
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)
    }

    async fn take_turn(&self, task: &str, period: Duration) -> Result<bool> {
        let taken = sqlx::query(
            "INSERT INTO sweep_turns (task, next_at)
             VALUES ($1, now() + $2 * interval '1 millisecond')
             ON CONFLICT (task) DO UPDATE SET next_at = EXCLUDED.next_at
             WHERE sweep_turns.next_at <= now()",
        )
        .bind(task)
        .bind(millis(period))
        .execute(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(taken.rows_affected() == 1)
    }

    async fn stored_bytes(&self) -> Result<u64> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(size), 0)::bigint FROM artifacts WHERE state = $1",
        )
        .bind(ArtifactState::Stored.as_i16())
        .fetch_one(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    async fn job_progress(&self, tenant: &TenantId, job: JobId) -> Result<Option<(u32, u8)>> {
        self.job_progress_pg(tenant, job).await
    }
}
