//! Job progress on both databases: the last percent an agent reported for a job's current
//! attempt, one narrow row per job. The write is one conditional insert-or-update that reads
//! the job's attempt and state in the same statement (so it never rewrites the wide `jobs`
//! row); a miss is explained like every fenced write (`NotFound`, stale attempt, not running).

use switchyard_types::{Error, JobId, Result, TenantId};

use crate::error::from_sqlx;
use crate::postgres::PgStore;
use crate::rows::{Op, db_int, explain_miss};
use crate::sqlite::{SqliteStore, now_ms};

/// A stored (attempt, percent) as the database returns it.
fn progress(attempt: i64, percent: i64) -> Result<(u32, u8)> {
    let corrupt = || Error::internal("corrupt job progress row");
    Ok((
        u32::try_from(attempt).map_err(|_| corrupt())?,
        u8::try_from(percent).map_err(|_| corrupt())?,
    ))
}

impl PgStore {
    pub(crate) async fn report_progress_pg(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        percent: u8,
    ) -> Result<()> {
        let written = sqlx::query(
            "INSERT INTO job_progress (job_id, attempt, percent, updated_at)
             SELECT id, attempt, $4, now() FROM jobs
              WHERE id = $1 AND tenant_id = $2 AND attempt = $3 AND state = 2
             ON CONFLICT (job_id) DO UPDATE SET attempt = EXCLUDED.attempt,
                 percent = EXCLUDED.percent, updated_at = EXCLUDED.updated_at",
        )
        .bind(id.0)
        .bind(tenant.as_str())
        .bind(db_int(attempt))
        .bind(i16::from(percent))
        .execute(self.pool())
        .await
        .map_err(from_sqlx)?;
        if written.rows_affected() == 0 {
            let now = self.fetch(tenant, id).await?;
            return Err(explain_miss(id, now, Op::Progress, attempt));
        }
        Ok(())
    }

    pub(crate) async fn job_progress_pg(
        &self,
        tenant: &TenantId,
        id: JobId,
    ) -> Result<Option<(u32, u8)>> {
        let row: Option<(i32, i16)> = sqlx::query_as(
            "SELECT p.attempt, p.percent FROM job_progress p JOIN jobs j ON j.id = p.job_id
              WHERE p.job_id = $1 AND j.tenant_id = $2",
        )
        .bind(id.0)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        row.map(|(a, p)| progress(a.into(), p.into())).transpose()
    }
}

impl SqliteStore {
    pub(crate) async fn report_progress_sqlite(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        percent: u8,
    ) -> Result<()> {
        let written = sqlx::query(
            "INSERT INTO job_progress (job_id, attempt, percent, updated_at)
             SELECT id, attempt, ?4, ?5 FROM jobs
              WHERE id = ?1 AND tenant_id = ?2 AND attempt = ?3 AND state = 2
             ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt,
                 percent = excluded.percent, updated_at = excluded.updated_at",
        )
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(i64::from(attempt))
        .bind(i64::from(percent))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(from_sqlx)?;
        if written.rows_affected() == 0 {
            let now = self.fetch(tenant, id).await?;
            return Err(explain_miss(id, now, Op::Progress, attempt));
        }
        Ok(())
    }

    pub(crate) async fn job_progress_sqlite(
        &self,
        tenant: &TenantId,
        id: JobId,
    ) -> Result<Option<(u32, u8)>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT p.attempt, p.percent FROM job_progress p JOIN jobs j ON j.id = p.job_id
              WHERE p.job_id = ?1 AND j.tenant_id = ?2",
        )
        .bind(id.to_string())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        row.map(|(a, p)| progress(a, p)).transpose()
    }
}
