//! Job logs on both databases: one transaction stores a chunk (once per attempt and sequence
//! number) and grows the job's byte count, refusing chunks past the cap.

use chrono::{DateTime, Utc};
use switchyard_types::{
    Error, JobId, LogAppend, LogChunk, MAX_LOG_BYTES_PER_JOB, Result, TenantId,
};

use crate::error::from_sqlx;
use crate::identity_rows::at;
use crate::postgres::PgStore;
use crate::sqlite::{SqliteStore, now_ms};

fn bytes(data: &str) -> i64 {
    i64::try_from(data.len()).unwrap_or(i64::MAX)
}

fn cap() -> i64 {
    i64::try_from(MAX_LOG_BYTES_PER_JOB).unwrap_or(i64::MAX)
}

fn seq(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::invalid("seq", "is too large"))
}

/// A stored chunk as either database returns it (instants converted by the caller).
#[derive(sqlx::FromRow)]
struct Row<T> {
    attempt: i32,
    seq: i64,
    data: String,
    created_at: T,
}

impl<T> Row<T> {
    fn into_chunk(self, at: DateTime<Utc>) -> Result<LogChunk> {
        let corrupt = || Error::internal("corrupt log row");
        Ok(LogChunk {
            attempt: u32::try_from(self.attempt).map_err(|_| corrupt())?,
            seq: u64::try_from(self.seq).map_err(|_| corrupt())?,
            data: self.data,
            at,
        })
    }
}

impl PgStore {
    pub(crate) async fn append_log_pg(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        n: u64,
        data: &str,
    ) -> Result<LogAppend> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        let stored = sqlx::query(
            "INSERT INTO job_logs (job_id, attempt, seq, tenant_id, data)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(id.0)
        .bind(i64::from(attempt))
        .bind(seq(n)?)
        .bind(tenant.as_str())
        .bind(data)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if stored.rows_affected() == 0 {
            return Ok(LogAppend::Duplicate);
        }
        let grown = sqlx::query(
            "INSERT INTO job_log_bytes AS b (job_id, bytes) VALUES ($1, $2)
             ON CONFLICT (job_id) DO UPDATE SET bytes = b.bytes + EXCLUDED.bytes
             WHERE b.bytes + EXCLUDED.bytes <= $3",
        )
        .bind(id.0)
        .bind(bytes(data))
        .bind(cap())
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if grown.rows_affected() == 0 || bytes(data) > cap() {
            return Ok(LogAppend::Full);
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(LogAppend::Stored)
    }

    pub(crate) async fn logs_pg(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: Option<u32>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogChunk>> {
        let rows: Vec<Row<DateTime<Utc>>> = sqlx::query_as(
            "SELECT attempt, seq, data, created_at FROM job_logs
             WHERE job_id = $1 AND tenant_id = $2 AND ($3::int IS NULL OR attempt = $3)
               AND ($4::bigint IS NULL OR seq > $4)
             ORDER BY attempt, seq LIMIT $5",
        )
        .bind(id.0)
        .bind(tenant.as_str())
        .bind(attempt.map(i64::from))
        .bind(after.map(seq).transpose()?)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter()
            .map(|r| {
                let at = r.created_at;
                r.into_chunk(at)
            })
            .collect()
    }
}

impl SqliteStore {
    pub(crate) async fn append_log_sqlite(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        n: u64,
        data: &str,
    ) -> Result<LogAppend> {
        let mut tx = self.pool.begin().await.map_err(from_sqlx)?;
        let stored = sqlx::query(
            "INSERT INTO job_logs (job_id, attempt, seq, tenant_id, data, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(i64::from(attempt))
        .bind(seq(n)?)
        .bind(tenant.as_str())
        .bind(data)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if stored.rows_affected() == 0 {
            return Ok(LogAppend::Duplicate);
        }
        let grown = sqlx::query(
            "INSERT INTO job_log_bytes (job_id, bytes) VALUES (?1, ?2)
             ON CONFLICT (job_id) DO UPDATE SET bytes = bytes + excluded.bytes
             WHERE bytes + excluded.bytes <= ?3",
        )
        .bind(id.to_string())
        .bind(bytes(data))
        .bind(cap())
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if grown.rows_affected() == 0 || bytes(data) > cap() {
            return Ok(LogAppend::Full);
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(LogAppend::Stored)
    }

    pub(crate) async fn logs_sqlite(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: Option<u32>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogChunk>> {
        let rows: Vec<Row<i64>> = sqlx::query_as(
            "SELECT attempt, seq, data, created_at FROM job_logs
             WHERE job_id = ?1 AND tenant_id = ?2 AND (?3 IS NULL OR attempt = ?3)
               AND (?4 IS NULL OR seq > ?4)
             ORDER BY attempt, seq LIMIT ?5",
        )
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(attempt.map(i64::from))
        .bind(after.map(seq).transpose()?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows.into_iter()
            .map(|r| {
                let when = at(r.created_at)?;
                r.into_chunk(when)
            })
            .collect()
    }
}
