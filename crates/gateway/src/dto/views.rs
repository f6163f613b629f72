//! Response data: what goes in the envelope's `data`, converted from the domain's types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use switchyard_core::Readiness;
use switchyard_types::{Job, JobFailure, JobState, Labels, Priority, QueueStats, ReapReport};
use utoipa::ToSchema;

use super::{JobStateSchema, LabelsSchema, PrioritySchema};

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobView {
    /// The job's id (a UUIDv7).
    pub id: String,
    /// The owning tenant.
    pub tenant: String,
    /// Target pool.
    pub pool: String,
    /// Executor kind.
    pub kind: String,
    /// Executor input.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Claim order.
    #[schema(value_type = PrioritySchema)]
    pub priority: Priority,
    /// Required agent labels.
    #[schema(value_type = LabelsSchema)]
    pub labels: Labels,
    /// Annotations given at enqueue.
    #[schema(value_type = LabelsSchema)]
    pub tags: Labels,
    /// Where the job is in its life.
    #[schema(value_type = JobStateSchema)]
    pub state: JobState,
    /// Attempts so far; the fencing token of the current one. Only ever grows.
    pub attempt: u32,
    /// Attempts allowed per allowance.
    pub max_attempts: u32,
    /// The attempt after which a failure dead-letters (grows on redrive).
    pub attempt_limit: u32,
    /// Per-attempt run limit, in seconds.
    pub timeout_seconds: u64,
    /// Not claimable before this instant.
    pub run_at: DateTime<Utc>,
    /// Idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Concurrency key, if any.
    pub concurrency_key: Option<String>,
    /// Jobs with the same concurrency key allowed to run at once.
    pub concurrency_limit: u32,
    /// The agent holding the current attempt.
    pub claimed_by: Option<String>,
    /// When the current attempt was claimed.
    pub claimed_at: Option<DateTime<Utc>>,
    /// When the current lease ends unless extended.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When the current attempt started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The executor's exit code.
    pub exit_code: Option<i32>,
    /// The executor's result, on success.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Every failed attempt, oldest first.
    pub failures: Vec<FailureView>,
    /// Times the job was redriven from the dead letter.
    pub redrives: u32,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        JobView {
            id: j.id.to_string(),
            tenant: j.tenant.to_string(),
            pool: j.pool,
            kind: j.kind,
            payload: j.payload,
            priority: j.priority,
            labels: j.labels,
            tags: j.tags,
            state: j.state,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            attempt_limit: j.attempt_limit,
            timeout_seconds: j.timeout.as_secs(),
            run_at: j.run_at,
            idempotency_key: j.idempotency_key,
            concurrency_key: j.concurrency_key,
            concurrency_limit: j.concurrency_limit,
            claimed_by: j.claimed_by,
            claimed_at: j.claimed_at,
            lease_expires_at: j.lease_expires_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            exit_code: j.exit_code,
            result: j.result,
            failures: j.failures.into_iter().map(FailureView::from).collect(),
            redrives: j.redrives,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

impl JobView {
    /// Views of `jobs`, in order.
    pub fn all(jobs: Vec<Job>) -> Vec<JobView> {
        jobs.into_iter().map(JobView::from).collect()
    }
}

/// One failed attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FailureView {
    /// The attempt that failed.
    pub attempt: u32,
    /// Why: the agent's error, or `lease expired`.
    pub error: String,
    /// When the failure was recorded.
    pub at: DateTime<Utc>,
}

impl From<JobFailure> for FailureView {
    fn from(f: JobFailure) -> Self {
        FailureView {
            attempt: f.attempt,
            error: f.error,
            at: f.at,
        }
    }
}

/// One job, or an array of jobs: the `data` of an enqueue, following the request's shape.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// The answer to a one-job request.
    One(Box<JobView>),
    /// The answer to a batch.
    Many(Vec<JobView>),
}

/// Queue figures for one (pool, priority) of the caller's tenant.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StatsView {
    /// The pool.
    pub pool: String,
    /// The priority.
    #[schema(value_type = Option<PrioritySchema>)]
    pub priority: Option<Priority>,
    /// Jobs waiting now.
    pub queued: u64,
    /// Jobs leased but not started now.
    pub claimed: u64,
    /// Jobs running now.
    pub running: u64,
    /// Jobs completed within the stats window.
    pub completed: u64,
    /// Attempts that failed within the window.
    pub failed: u64,
    /// Jobs dead-lettered within the window.
    pub dead_lettered: u64,
    /// Mean seconds from due to claimed.
    pub wait_avg_seconds: f64,
    /// 95th percentile of the same.
    pub wait_p95_seconds: f64,
    /// Mean seconds from start to completion.
    pub run_avg_seconds: f64,
    /// 95th percentile of the same.
    pub run_p95_seconds: f64,
    /// failed / (completed + failed) within the window.
    pub failure_rate: f64,
    /// Age in seconds of the oldest due queued job.
    pub oldest_queued_age_seconds: f64,
}

impl From<QueueStats> for StatsView {
    fn from(s: QueueStats) -> Self {
        StatsView {
            pool: s.pool,
            priority: s.priority,
            queued: s.queued,
            claimed: s.claimed,
            running: s.running,
            completed: s.completed,
            failed: s.failed,
            dead_lettered: s.dead_lettered,
            wait_avg_seconds: s.wait_avg_seconds,
            wait_p95_seconds: s.wait_p95_seconds,
            run_avg_seconds: s.run_avg_seconds,
            run_p95_seconds: s.run_p95_seconds,
            failure_rate: s.failure_rate,
            oldest_queued_age_seconds: s.oldest_queued_age_seconds,
        }
    }
}

/// What one reaper pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReapView {
    /// Expired leases put back in the queue.
    pub requeued: u64,
    /// Expired leases that were the job's last attempt.
    pub dead_lettered: u64,
}

impl From<ReapReport> for ReapView {
    fn from(r: ReapReport) -> Self {
        ReapView {
            requeued: r.requeued,
            dead_lettered: r.dead_lettered,
        }
    }
}

/// A status word, e.g. `{"status": "ok"}` from `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusView {
    /// `ok`.
    pub status: String,
}

/// The answer of `/api/ready`, on `200` and on `503` alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReadyView {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Every check by name: `db`, `migrations`, and `redis` when Redis is configured.
    pub checks: BTreeMap<String, CheckView>,
}

/// The outcome of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CheckView {
    /// Whether the dependency answered correctly in time.
    pub ok: bool,
    /// What was found, for operators.
    pub detail: String,
    /// How long the check took.
    pub latency_ms: u64,
}

impl From<Readiness> for ReadyView {
    fn from(r: Readiness) -> Self {
        let status = if r.is_ready() { "ready" } else { "not_ready" };
        let checks = r
            .checks
            .into_iter()
            .map(|(name, c)| {
                (
                    name.to_owned(),
                    CheckView {
                        ok: c.ok,
                        detail: c.detail,
                        latency_ms: c.latency_ms,
                    },
                )
            })
            .collect();
        ReadyView {
            status: status.to_owned(),
            checks,
        }
    }
}

/// One chunk of a job's log.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogChunkView {
    /// The attempt that wrote it.
    pub attempt: u32,
    /// Its position in the attempt's output, from 0.
    pub seq: u64,
    /// The text (secrets masked on the agent).
    pub data: String,
    /// When it was stored.
    pub at: DateTime<Utc>,
}

impl From<switchyard_types::LogChunk> for LogChunkView {
    fn from(c: switchyard_types::LogChunk) -> Self {
        LogChunkView {
            attempt: c.attempt,
            seq: c.seq,
            data: c.data,
            at: c.at,
        }
    }
}
