//! The job row both adapters decode into, and the rules shared by both when a conditional
//! update matched nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_types::{
    Error, Job, JobFailure, JobId, JobState, Labels, Priority, Result, TenantId,
};
use uuid::Uuid;

/// A job row in database-neutral primitive types.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RawJob {
    pub id: Uuid,
    pub seq: i64,
    pub tenant_id: String,
    pub pool: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub labels: serde_json::Value,
    pub tags: serde_json::Value,
    pub state: i16,
    pub attempt: i32,
    pub max_attempts: i32,
    pub attempt_limit: i32,
    pub timeout_ms: i64,
    pub run_at: DateTime<Utc>,
    pub fair_tag: i64,
    pub idempotency_key: Option<String>,
    pub concurrency_key: Option<String>,
    pub concurrency_limit: i32,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub result: Option<serde_json::Value>,
    pub failures: serde_json::Value,
    pub redrives: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RawJob {
    /// Claim order: priority first, then fair tag, then arrival.
    pub(crate) fn claim_order(&self) -> (std::cmp::Reverse<i16>, i64, i64) {
        (std::cmp::Reverse(self.priority), self.fair_tag, self.seq)
    }
}

fn count(n: i32, field: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::internal(format!("negative {field} in job row")))
}

impl TryFrom<RawJob> for Job {
    type Error = Error;

    fn try_from(r: RawJob) -> Result<Job> {
        let corrupt = |what: &str| Error::internal(format!("corrupt {what} in job {}", r.id));
        let labels: Labels =
            serde_json::from_value(r.labels.clone()).map_err(|_| corrupt("labels"))?;
        let tags: Labels = serde_json::from_value(r.tags.clone()).map_err(|_| corrupt("tags"))?;
        let failures: Vec<JobFailure> =
            serde_json::from_value(r.failures.clone()).map_err(|_| corrupt("failures"))?;
        Ok(Job {
            id: JobId(r.id),
            tenant: TenantId::parse(&r.tenant_id).map_err(|_| corrupt("tenant"))?,
            priority: Priority::from_i16(r.priority).ok_or_else(|| corrupt("priority"))?,
            state: JobState::from_i16(r.state).ok_or_else(|| corrupt("state"))?,
            attempt: count(r.attempt, "attempt")?,
            max_attempts: count(r.max_attempts, "max_attempts")?,
            attempt_limit: count(r.attempt_limit, "attempt_limit")?,
            concurrency_limit: count(r.concurrency_limit, "concurrency_limit")?,
            redrives: count(r.redrives, "redrives")?,
            timeout: Duration::from_millis(u64::try_from(r.timeout_ms).unwrap_or(0)),
            pool: r.pool,
            kind: r.kind,
            payload: r.payload,
            labels,
            tags,
            run_at: r.run_at,
            idempotency_key: r.idempotency_key,
            concurrency_key: r.concurrency_key,
            claimed_by: r.claimed_by,
            claimed_at: r.claimed_at,
            lease_expires_at: r.lease_expires_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            exit_code: r.exit_code,
            result: r.result,
            failures,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Converts rows in claim order.
pub(crate) fn into_jobs(mut rows: Vec<RawJob>, sort_for_claim: bool) -> Result<Vec<Job>> {
    if sort_for_claim {
        rows.sort_by_key(RawJob::claim_order);
    }
    rows.into_iter().map(Job::try_from).collect()
}

/// Which states an operation accepts, for the error when a conditional update matched nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Start,
    Extend,
    Complete,
    Progress,
    Cancel,
    SetPriority,
    Redrive,
}

impl Op {
    fn needs(self) -> &'static str {
        match self {
            Op::Start | Op::Extend | Op::Complete => "CLAIMED or RUNNING",
            Op::Progress => "RUNNING",
            Op::Cancel | Op::SetPriority => "a non-terminal state",
            Op::Redrive => "DEAD_LETTERED",
        }
    }

    fn fenced(self) -> bool {
        match self {
            Op::Start | Op::Extend | Op::Complete | Op::Progress => true,
            Op::Cancel | Op::SetPriority | Op::Redrive => false,
        }
    }
}

/// Why a conditional update on job `id` matched no row, given the row as it is now (`None`:
/// absent or another tenant's): `NotFound`, a stale attempt, or the wrong state. All `Conflict`
/// except the first.
pub(crate) fn explain_miss(id: JobId, current: Option<Job>, op: Op, attempt: u32) -> Error {
    match current {
        None => Error::not_found(format_args!("job {id}")),
        Some(job) if op.fenced() && job.attempt != attempt => Error::conflict(format!(
            "stale attempt {attempt}: job {id} is on attempt {}",
            job.attempt
        )),
        Some(job) => Error::conflict(format!(
            "job {id} is {}; this operation needs {}",
            job.state,
            op.needs()
        )),
    }
}

/// A `u32` as the `i32` the databases store; values above `i32::MAX` are clamped.
pub(crate) fn db_int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A duration as whole milliseconds.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A stored count of milliseconds as a duration (negative ones as zero).
pub(crate) fn duration_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `failed / (completed + failed)`, 0 when both are 0.
pub(crate) fn failure_rate(completed: u64, failed: u64) -> f64 {
    match completed + failed {
        0 => 0.0,
        total => failed as f64 / total as f64,
    }
}
