//! Whole messages: jobs, failures, outcomes, stats and reaper reports.

use std::time::Duration;

use switchyard_types::{
    Error, Job, JobFailure, LogChunk, Outcome, QueueStats, ReapReport, Result, TenantId,
};

use super::{datetime, job_id, job_state_from_pb, opt_datetime, priority_from_pb, required};
use super::{json_to_value, timestamp, value_to_json};
use crate::v1 as pb;
use crate::v1::complete_job_request as complete;

impl From<Job> for pb::Job {
    fn from(job: Job) -> Self {
        pb::Job {
            id: job.id.to_string(),
            tenant: job.tenant.to_string(),
            pool: job.pool,
            kind: job.kind,
            payload: Some(json_to_value(job.payload)),
            priority: pb::Priority::from(job.priority).into(),
            labels: job.labels,
            tags: job.tags,
            state: pb::JobState::from(job.state).into(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            attempt_limit: job.attempt_limit,
            // Whole seconds on the wire; a sub-second rest rounds up so a limit never shrinks.
            timeout_seconds: job.timeout.as_secs() + u64::from(job.timeout.subsec_nanos() > 0),
            run_at: Some(timestamp(job.run_at)),
            idempotency_key: job.idempotency_key,
            concurrency_key: job.concurrency_key,
            concurrency_limit: job.concurrency_limit,
            claimed_by: job.claimed_by,
            claimed_at: job.claimed_at.map(timestamp),
            lease_expires_at: job.lease_expires_at.map(timestamp),
            started_at: job.started_at.map(timestamp),
            finished_at: job.finished_at.map(timestamp),
            exit_code: job.exit_code,
            result: job.result.map(json_to_value),
            failures: job.failures.into_iter().map(pb::JobFailure::from).collect(),
            redrives: job.redrives,
            created_at: Some(timestamp(job.created_at)),
            updated_at: Some(timestamp(job.updated_at)),
        }
    }
}

/// Reads a job a server sent (clients: the agent, the CLI). Required fields that are missing or
/// malformed are invalid, named by their proto field.
impl TryFrom<pb::Job> for Job {
    type Error = Error;

    fn try_from(job: pb::Job) -> Result<Self> {
        Ok(Job {
            id: job_id(&job.id, "id")?,
            tenant: TenantId::parse(&job.tenant)?,
            pool: job.pool,
            kind: job.kind,
            payload: job
                .payload
                .map_or(Ok(serde_json::Value::Null), |v| value_to_json(v, "payload"))?,
            priority: required(priority_from_pb(job.priority, "priority")?, "priority")?,
            labels: job.labels,
            tags: job.tags,
            state: required(job_state_from_pb(job.state, "state")?, "state")?,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            attempt_limit: job.attempt_limit,
            timeout: Duration::from_secs(job.timeout_seconds),
            run_at: datetime(required(job.run_at.as_ref(), "run_at")?, "run_at")?,
            idempotency_key: job.idempotency_key,
            concurrency_key: job.concurrency_key,
            concurrency_limit: job.concurrency_limit,
            claimed_by: job.claimed_by,
            claimed_at: opt_datetime(job.claimed_at.as_ref(), "claimed_at")?,
            lease_expires_at: opt_datetime(job.lease_expires_at.as_ref(), "lease_expires_at")?,
            started_at: opt_datetime(job.started_at.as_ref(), "started_at")?,
            finished_at: opt_datetime(job.finished_at.as_ref(), "finished_at")?,
            exit_code: job.exit_code,
            result: job.result.map(|v| value_to_json(v, "result")).transpose()?,
            failures: job
                .failures
                .into_iter()
                .map(JobFailure::try_from)
                .collect::<Result<_>>()?,
            redrives: job.redrives,
            created_at: datetime(
                required(job.created_at.as_ref(), "created_at")?,
                "created_at",
            )?,
            updated_at: datetime(
                required(job.updated_at.as_ref(), "updated_at")?,
                "updated_at",
            )?,
        })
    }
}

impl From<JobFailure> for pb::JobFailure {
    fn from(failure: JobFailure) -> Self {
        pb::JobFailure {
            attempt: failure.attempt,
            error: failure.error,
            at: Some(timestamp(failure.at)),
        }
    }
}

impl TryFrom<pb::JobFailure> for JobFailure {
    type Error = Error;

    fn try_from(failure: pb::JobFailure) -> Result<Self> {
        Ok(JobFailure {
            attempt: failure.attempt,
            error: failure.error,
            at: datetime(required(failure.at.as_ref(), "failures.at")?, "failures.at")?,
        })
    }
}

/// Reads the outcome of a `CompleteJobRequest`: exactly one of `succeeded` / `failed` is
/// required. A `null` or unset `result` means no result.
pub fn outcome_from_pb(outcome: Option<complete::Outcome>) -> Result<Outcome> {
    match outcome {
        None => Err(Error::invalid("outcome", "set succeeded or failed")),
        Some(complete::Outcome::Succeeded(ok)) => Ok(Outcome::Succeeded {
            exit_code: ok.exit_code,
            result: match ok
                .result
                .map(|v| value_to_json(v, "succeeded.result"))
                .transpose()?
            {
                None | Some(serde_json::Value::Null) => None,
                Some(result) => Some(result),
            },
        }),
        Some(complete::Outcome::Failed(failed)) => Ok(Outcome::Failed {
            exit_code: failed.exit_code,
            error: failed.error,
        }),
    }
}

impl From<Outcome> for complete::Outcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Succeeded { exit_code, result } => {
                complete::Outcome::Succeeded(complete::Succeeded {
                    exit_code,
                    result: result.map(json_to_value),
                })
            }
            Outcome::Failed { exit_code, error } => {
                complete::Outcome::Failed(complete::Failed { exit_code, error })
            }
        }
    }
}

impl From<QueueStats> for pb::PoolStats {
    fn from(s: QueueStats) -> Self {
        pb::PoolStats {
            pool: s.pool,
            priority: s
                .priority
                .map_or(pb::Priority::Unspecified, pb::Priority::from)
                .into(),
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

impl TryFrom<pb::PoolStats> for QueueStats {
    type Error = Error;

    fn try_from(s: pb::PoolStats) -> Result<Self> {
        Ok(QueueStats {
            priority: priority_from_pb(s.priority, "priority")?,
            pool: s.pool,
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
        })
    }
}

impl From<ReapReport> for pb::RequeueExpiredResponse {
    fn from(r: ReapReport) -> Self {
        pb::RequeueExpiredResponse {
            requeued: r.requeued,
            dead_lettered: r.dead_lettered,
        }
    }
}

impl From<pb::RequeueExpiredResponse> for ReapReport {
    fn from(r: pb::RequeueExpiredResponse) -> Self {
        ReapReport {
            requeued: r.requeued,
            dead_lettered: r.dead_lettered,
        }
    }
}

impl From<LogChunk> for pb::JobLogChunk {
    fn from(c: LogChunk) -> Self {
        pb::JobLogChunk {
            attempt: c.attempt,
            seq: c.seq,
            data: c.data,
            at: Some(timestamp(c.at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::json;
    use switchyard_types::{JobId, JobState, Labels, Priority};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 250_000_000).unwrap()
    }

    fn full_job() -> Job {
        Job {
            id: JobId::new(),
            tenant: TenantId::parse("acme").unwrap(),
            pool: "build".into(),
            kind: "shell".into(),
            payload: json!({"cmd": "make", "n": 3}),
            priority: Priority::High,
            labels: Labels::from([("os".into(), "linux".into())]),
            tags: Labels::from([("service".into(), "api".into())]),
            state: JobState::Running,
            attempt: 2,
            max_attempts: 3,
            attempt_limit: 6,
            timeout: Duration::from_secs(600),
            run_at: at(1_700_000_000),
            idempotency_key: Some("idem-1".into()),
            concurrency_key: Some("deploy-prod".into()),
            concurrency_limit: 2,
            claimed_by: Some("agent-7".into()),
            claimed_at: Some(at(1_700_000_010)),
            lease_expires_at: Some(at(1_700_000_040)),
            started_at: Some(at(1_700_000_011)),
            finished_at: None,
            exit_code: Some(1),
            result: Some(json!(["not", "an", "object"])),
            failures: vec![JobFailure {
                attempt: 1,
                error: "lease expired".into(),
                at: at(1_700_000_005),
            }],
            redrives: 1,
            created_at: at(1_699_999_999),
            updated_at: at(1_700_000_011),
        }
    }

    #[test]
    fn jobs_round_trip() {
        let job = full_job();
        let wire = pb::Job::from(job.clone());
        assert_eq!(wire.state, pb::JobState::Running as i32);
        assert_eq!(wire.priority, pb::Priority::High as i32);
        assert_eq!(Job::try_from(wire).unwrap(), job);

        let sparse = Job {
            idempotency_key: None,
            concurrency_key: None,
            claimed_by: None,
            claimed_at: None,
            lease_expires_at: None,
            started_at: None,
            exit_code: None,
            result: None,
            failures: vec![],
            state: JobState::Queued,
            ..full_job()
        };
        assert_eq!(
            Job::try_from(pb::Job::from(sparse.clone())).unwrap(),
            sparse
        );
    }

    #[test]
    fn sub_second_timeouts_round_up() {
        let job = Job {
            timeout: Duration::from_millis(1500),
            ..full_job()
        };
        assert_eq!(pb::Job::from(job).timeout_seconds, 2);
    }

    #[test]
    fn malformed_jobs_name_the_field() {
        let mut wire = pb::Job::from(full_job());
        wire.state = pb::JobState::Unspecified as i32;
        assert_eq!(
            Job::try_from(wire).unwrap_err().violations[0].field,
            "state"
        );
        let mut wire = pb::Job::from(full_job());
        wire.created_at = None;
        assert_eq!(
            Job::try_from(wire).unwrap_err().violations[0].field,
            "created_at"
        );
    }

    #[test]
    fn outcomes_round_trip() {
        let outcomes = [
            Outcome::Succeeded {
                exit_code: Some(0),
                result: Some(json!({"artifacts": 2})),
            },
            Outcome::Succeeded {
                exit_code: None,
                result: None,
            },
            Outcome::Failed {
                exit_code: Some(2),
                error: "make: *** [all] Error 2".into(),
            },
        ];
        for outcome in outcomes {
            let wire = complete::Outcome::from(outcome.clone());
            assert_eq!(outcome_from_pb(Some(wire)).unwrap(), outcome);
        }
        assert_eq!(
            outcome_from_pb(None).unwrap_err().violations[0].field,
            "outcome"
        );
        let null_result = complete::Outcome::Succeeded(complete::Succeeded {
            exit_code: None,
            result: Some(json_to_value(serde_json::Value::Null)),
        });
        assert_eq!(
            outcome_from_pb(Some(null_result)).unwrap(),
            Outcome::Succeeded {
                exit_code: None,
                result: None
            }
        );
    }

    #[test]
    fn stats_and_reports_round_trip() {
        let stats = QueueStats {
            pool: "build".into(),
            priority: Some(Priority::Critical),
            queued: 4,
            running: 2,
            failure_rate: 0.25,
            wait_p95_seconds: 1.5,
            ..QueueStats::default()
        };
        assert_eq!(
            QueueStats::try_from(pb::PoolStats::from(stats.clone())).unwrap(),
            stats
        );
        let all = QueueStats {
            priority: None,
            ..stats
        };
        let wire = pb::PoolStats::from(all.clone());
        assert_eq!(wire.priority, pb::Priority::Unspecified as i32);
        assert_eq!(QueueStats::try_from(wire).unwrap(), all);

        let report = ReapReport {
            requeued: 3,
            dead_lettered: 1,
        };
        assert_eq!(
            ReapReport::from(pb::RequeueExpiredResponse::from(report)),
            report
        );
    }
}
