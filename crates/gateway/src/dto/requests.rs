//! Request bodies and query strings, and their conversion into `switchyard-core` requests.
//! Types and shapes are checked here (serde); ranges and names are checked by `core`.
//! Unknown fields are rejected so a typo (`"priorty"`) is an error, not a silent default.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::{ClaimJobs, EnqueueJob, ListJobs};
use switchyard_types::{Error, JobState, Labels, Outcome, Priority};
use utoipa::{IntoParams, ToSchema};

use super::{JobStateSchema, LabelsSchema, PrioritySchema};
use crate::envelope::ApiError;
use crate::extract::decode_value;

/// One job to enqueue.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Target pool of agents.
    #[schema(example = "build")]
    pub pool: String,
    /// Executor kind, e.g. `shell`.
    #[schema(example = "shell")]
    pub kind: String,
    /// Opaque executor input, at most 256 KiB serialised; never secrets. Default `{}`.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"cmd": "make"}))]
    pub payload: serde_json::Value,
    /// Default `NORMAL`.
    #[schema(value_type = Option<PrioritySchema>)]
    pub priority: Option<Priority>,
    /// Labels an agent must carry (all of them, equal values) to claim the job.
    #[serde(default)]
    #[schema(value_type = LabelsSchema)]
    pub labels: Labels,
    /// Annotations that do not affect claims; `service` and `version` tie the job to a
    /// guarded deployment.
    #[serde(default)]
    #[schema(value_type = LabelsSchema)]
    pub tags: Labels,
    /// Attempts before the dead letter: 1-100, default 3.
    pub max_attempts: Option<u32>,
    /// Per-attempt run limit in seconds: 1-604800, default 3600.
    pub timeout_seconds: Option<u64>,
    /// Not claimable before this instant (RFC 3339); excludes `delay_seconds`.
    pub run_at: Option<DateTime<Utc>>,
    /// Not claimable before now + this many seconds (database clock): 0-2592000.
    pub delay_seconds: Option<u64>,
    /// Enqueueing again with the same key returns the first job.
    pub idempotency_key: Option<String>,
    /// At most `concurrency_limit` of the tenant's jobs with this key are claimed or running at
    /// once (enforced atomically by the claim).
    pub concurrency_key: Option<String>,
    /// 1-10000, default 1; only with a `concurrency_key`.
    pub concurrency_limit: Option<u32>,
}

impl From<JobSpec> for EnqueueJob {
    fn from(s: JobSpec) -> Self {
        EnqueueJob {
            pool: s.pool,
            kind: s.kind,
            payload: s.payload,
            priority: s.priority,
            labels: s.labels,
            tags: s.tags,
            max_attempts: s.max_attempts,
            timeout_seconds: s.timeout_seconds,
            run_at: s.run_at,
            delay_seconds: s.delay_seconds,
            idempotency_key: s.idempotency_key,
            concurrency_key: s.concurrency_key,
            concurrency_limit: s.concurrency_limit,
        }
    }
}

/// Several jobs enqueued in one transaction (1-1000).
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBatch {
    /// The jobs, in order; the response lists them in the same order.
    pub jobs: Vec<JobSpec>,
}

/// The body of `POST /queue/jobs`: one job, or `{"jobs": [...]}` for a batch.
#[derive(Debug, Clone, PartialEq, ToSchema)]
#[serde(untagged)]
pub enum EnqueueRequest {
    /// One job; the response's `data` is the job.
    One(Box<JobSpec>),
    /// A batch; the response's `data` is an array.
    Batch(EnqueueBatch),
}

impl EnqueueRequest {
    /// Reads the body: an object with a `jobs` member is a batch, anything else one job. Errors
    /// name the field (`jobs[2].priority`).
    pub fn from_json(body: serde_json::Value) -> Result<Self, ApiError> {
        if body.get("jobs").is_some() {
            decode_value(body).map(EnqueueRequest::Batch)
        } else {
            decode_value(body).map(|job| EnqueueRequest::One(Box::new(job)))
        }
    }

    /// The jobs for `Queue::enqueue`, and whether the client sent a batch.
    pub fn into_jobs(self) -> (Vec<EnqueueJob>, bool) {
        match self {
            EnqueueRequest::One(job) => (vec![(*job).into()], false),
            EnqueueRequest::Batch(batch) => {
                (batch.jobs.into_iter().map(Into::into).collect(), true)
            }
        }
    }
}

/// Query parameters of `GET /queue/jobs`; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListJobsQuery {
    /// Only jobs in this state (case-insensitive).
    #[param(value_type = Option<JobStateSchema>)]
    pub state: Option<JobState>,
    /// Only jobs of this pool.
    pub pool: Option<String>,
    /// Only jobs of this priority (case-insensitive).
    #[param(value_type = Option<PrioritySchema>)]
    pub priority: Option<Priority>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs carrying this label: `key:value` or `key=value`.
    pub label: Option<String>,
    /// Page size: 1-500, default 50.
    pub limit: Option<u32>,
    /// `meta.next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl ListJobsQuery {
    /// The list request for `Queue::list`.
    pub fn into_list(self) -> Result<ListJobs, ApiError> {
        let label = match self.label.as_deref() {
            None => None,
            Some(raw) => match raw.find([':', '=']) {
                Some(at) if at > 0 => Some((raw[..at].to_owned(), raw[at + 1..].to_owned())),
                Some(_) | None => {
                    return Err(ApiError(Error::invalid(
                        "label",
                        "must be key:value or key=value",
                    )));
                }
            },
        };
        Ok(ListJobs {
            state: self.state,
            pool: self.pool,
            priority: self.priority,
            kind: self.kind,
            label,
            limit: self.limit,
            page_token: self.page_token,
        })
    }
}

/// The body of `POST /queue/claim`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// The claiming agent's id.
    #[schema(example = "a1")]
    pub agent_id: String,
    /// The pool to take from.
    #[schema(example = "build")]
    pub pool: String,
    /// Labels the agent offers; a job's labels must be a subset.
    #[serde(default)]
    #[schema(value_type = LabelsSchema)]
    pub labels: Labels,
    /// At most this many jobs: 1-100, default 1.
    pub max_jobs: Option<u32>,
    /// Lease length in seconds: 5-3600, default 30.
    pub lease_seconds: Option<u64>,
    /// How long to wait for work when none is due: 0-60, default 0 (answer at once).
    pub wait_seconds: Option<u64>,
}

impl From<ClaimBody> for ClaimJobs {
    fn from(b: ClaimBody) -> Self {
        ClaimJobs {
            agent_id: b.agent_id,
            pool: b.pool,
            labels: b.labels,
            max_jobs: b.max_jobs,
            lease_seconds: b.lease_seconds,
            wait: Duration::from_secs(b.wait_seconds.unwrap_or(0)),
            holder: None,
        }
    }
}

/// The body of `PATCH /queue/jobs/{id}/start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The attempt (fencing token) the agent holds.
    pub attempt: u32,
}

/// The body of `PATCH /queue/jobs/{id}/extend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// The attempt (fencing token) the agent holds.
    pub attempt: u32,
    /// New lease length from now, in seconds: 5-3600, default 30.
    pub lease_seconds: Option<u64>,
}

/// The body of `PATCH /queue/jobs/{id}/complete`: success with an optional `exit_code` and
/// `result`, or failure with an `error`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// The attempt (fencing token) the agent holds.
    pub attempt: u32,
    /// Whether the work succeeded.
    pub succeeded: bool,
    /// The process exit code, when there is one.
    pub exit_code: Option<i32>,
    /// Structured output, on success only.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Why it failed (1-4096 characters), on failure only.
    pub error: Option<String>,
}

impl CompleteBody {
    /// The attempt and its outcome for `Queue::complete`.
    pub fn into_outcome(self) -> Result<(u32, Outcome), ApiError> {
        let outcome = match (self.succeeded, self.result, self.error) {
            (true, result, None) => Outcome::Succeeded {
                exit_code: self.exit_code,
                result,
            },
            (false, None, error) => Outcome::Failed {
                exit_code: self.exit_code,
                error: error.unwrap_or_default(),
            },
            (true, _, Some(_)) => {
                return Err(ApiError(Error::invalid(
                    "error",
                    "only with \"succeeded\": false",
                )));
            }
            (false, Some(_), _) => {
                return Err(ApiError(Error::invalid(
                    "result",
                    "only with \"succeeded\": true",
                )));
            }
        };
        Ok((self.attempt, outcome))
    }
}

/// The tenant's running limit: the body of `PUT /queue/limits` and the data of both limit routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// At most this many of the tenant's jobs claimed or running at once (1-100000); `null`:
    /// no cap.
    pub max_running: Option<u32>,
}

/// The body of `PATCH /queue/jobs/{id}/priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorityBody {
    /// The new priority (case-insensitive).
    #[schema(value_type = PrioritySchema)]
    pub priority: Priority,
}

/// Query parameters of `GET /queue/jobs/{id}/logs`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only this attempt's output.
    pub attempt: Option<u32>,
    /// Only chunks after this sequence number (needs `attempt`): poll with the last one seen to
    /// tail a running job.
    pub after_seq: Option<u64>,
    /// At most this many chunks (default 500, at most 5000).
    pub limit: Option<u32>,
}

/// Which attempt a live log tail follows.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TailQuery {
    /// Follow only this attempt (default: every attempt, from the first).
    pub attempt: Option<u32>,
}
