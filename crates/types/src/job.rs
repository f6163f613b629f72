//! Jobs and the queue's vocabulary.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The most jobs one enqueue call may carry.
pub const MAX_BATCH: usize = 1000;
/// The largest payload (serialised JSON) a job may carry.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

uuid_id!(
    /// A job's identity: a UUIDv7, so ids sort roughly by creation time.
    JobId,
    "job"
);

/// A tenant's id: 1–64 characters of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// The tenant `switchyard dev` and unauthenticated set-ups use.
    pub fn default_tenant() -> Self {
        TenantId("default".to_owned())
    }

    /// Validates and wraps a tenant id.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(TenantId(s.to_owned()))
        } else {
            Err(Error::invalid(
                "tenant",
                "must be 1-64 characters of [a-z0-9_-]",
            ))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Labels on a job (what it needs) or an agent (what it offers).
pub type Labels = BTreeMap<String, String>;

/// Defines a `u8`-backed enum whose wire form is `UPPER_SNAKE`, parsed case-insensitively.
macro_rules! upper_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal => $num:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in ascending order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The `UPPER_SNAKE` wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The number stored in the database.
            pub fn as_i16(self) -> i16 {
                match self { $($name::$variant => $num),+ }
            }

            /// The value stored in the database as `n`.
            pub fn from_i16(n: i16) -> Option<Self> {
                match n { $($num => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| {
                        let names: Vec<_> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        Error::invalid($what, format!("unknown value {s:?}; expected one of {}", names.join(", ")))
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(|e: Error| serde::de::Error::custom(e.message))
            }
        }
    };
}

upper_enum!(
    /// How urgent a job is: `CRITICAL > HIGH > NORMAL > LOW`; FIFO within one.
    #[derive(Default)]
    Priority, "priority" {
        /// Background work.
        Low = "LOW" => 0,
        /// The default.
        #[default]
        Normal = "NORMAL" => 1,
        /// Ahead of normal work.
        High = "HIGH" => 2,
        /// Ahead of everything.
        Critical = "CRITICAL" => 3,
    }
);

upper_enum!(
    /// Where a job is in its life: `QUEUED -> CLAIMED -> RUNNING -> COMPLETED`, failures back to
    /// `QUEUED` or on to `DEAD_LETTERED`, `CANCELLED` from any non-terminal state.
    JobState, "state" {
        /// Waiting to be claimed (possibly not before `run_at`).
        Queued = "QUEUED" => 0,
        /// Leased to an agent that has not reported start yet.
        Claimed = "CLAIMED" => 1,
        /// The agent runs it under a lease.
        Running = "RUNNING" => 2,
        /// Finished successfully. Terminal.
        Completed = "COMPLETED" => 3,
        /// Failed on its last allowed attempt. Terminal until redriven.
        DeadLettered = "DEAD_LETTERED" => 4,
        /// Cancelled by a user. Terminal.
        Cancelled = "CANCELLED" => 5,
    }
);

impl JobState {
    /// Whether no ordinary transition leaves this state.
    pub fn is_terminal(self) -> bool {
        match self {
            JobState::Completed | JobState::DeadLettered | JobState::Cancelled => true,
            JobState::Queued | JobState::Claimed | JobState::Running => false,
        }
    }
}

/// A request to enqueue one job (already validated by `core`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The owner.
    pub tenant: TenantId,
    /// The pool of agents that may run it.
    pub pool: String,
    /// What kind of work it is (`shell`, `deploy`, ...); agents dispatch on it.
    pub kind: String,
    /// Opaque JSON for the executor; never secrets.
    pub payload: serde_json::Value,
    /// Claim order.
    pub priority: Priority,
    /// Labels an agent must carry (all of them, equal values) to claim it.
    pub labels: Labels,
    /// Annotations that do not affect claims: `service` and `version` tie the job to a
    /// deployment's guard.
    pub tags: Labels,
    /// How many attempts before it is dead-lettered.
    pub max_attempts: u32,
    /// How long one attempt may run, enforced by the agent.
    pub timeout: Duration,
    /// Not claimable before this instant (`None`: now + `delay`, by the database clock).
    pub run_at: Option<DateTime<Utc>>,
    /// Not claimable before the database's `now()` plus this.
    pub delay: Duration,
    /// Enqueueing twice with the same key (per tenant) returns the first job.
    pub idempotency_key: Option<String>,
    /// At most `concurrency_limit` jobs with this key (per tenant) are claimed or running at once.
    pub concurrency_key: Option<String>,
    /// See `concurrency_key`.
    pub concurrency_limit: u32,
}

/// One failed attempt, kept on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFailure {
    /// The attempt (fencing token) that failed.
    pub attempt: u32,
    /// Why: the agent's error, or `lease expired`.
    pub error: String,
    /// When the failure was recorded (database clock).
    pub at: DateTime<Utc>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Identity.
    pub id: JobId,
    /// Owner.
    pub tenant: TenantId,
    /// Target pool.
    pub pool: String,
    /// Executor kind.
    pub kind: String,
    /// Executor input.
    pub payload: serde_json::Value,
    /// Claim order.
    pub priority: Priority,
    /// Required agent labels.
    pub labels: Labels,
    /// Annotations (see [`NewJob::tags`]).
    pub tags: Labels,
    /// Current state.
    pub state: JobState,
    /// Attempts so far; the fencing token of the current one. Only ever grows.
    pub attempt: u32,
    /// Attempts allowed per allowance.
    pub max_attempts: u32,
    /// The attempt number after which a failure dead-letters (grows by `max_attempts` on redrive).
    pub attempt_limit: u32,
    /// Per-attempt run limit.
    pub timeout: Duration,
    /// Not claimable before.
    pub run_at: DateTime<Utc>,
    /// See [`NewJob::idempotency_key`].
    pub idempotency_key: Option<String>,
    /// See [`NewJob::concurrency_key`].
    pub concurrency_key: Option<String>,
    /// See [`NewJob::concurrency_limit`].
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
    /// The executor's exit code, on completion or failure.
    pub exit_code: Option<i32>,
    /// The executor's result, on success.
    pub result: Option<serde_json::Value>,
    /// Every failed attempt, oldest first.
    pub failures: Vec<JobFailure>,
    /// Times this job was redriven from the dead letter.
    pub redrives: u32,
    /// Creation instant (database clock).
    pub created_at: DateTime<Utc>,
    /// Last change (database clock).
    pub updated_at: DateTime<Utc>,
}

/// A request for work from one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// Who will run the jobs.
    pub agent_id: String,
    /// Which pool to take from.
    pub pool: String,
    /// What the agent offers; a job's labels must be a subset.
    pub labels: Labels,
    /// At most this many jobs.
    pub max_jobs: u32,
    /// Lease length; the expiry instant is set by the database clock.
    pub lease: Duration,
    /// The registry id of the agent whose stream takes the jobs: its heartbeats then keep the
    /// jobs leased (agent-level lease). `None` for claims over the unary API.
    pub holder: Option<uuid::Uuid>,
}

/// How an attempt ended, as the agent reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The work succeeded.
    Succeeded {
        /// The process exit code, when there is one.
        exit_code: Option<i32>,
        /// Structured output.
        result: Option<serde_json::Value>,
    },
    /// The work failed; retried while attempts remain.
    Failed {
        /// The process exit code, when there is one.
        exit_code: Option<i32>,
        /// Why, for humans.
        error: String,
    },
}

/// Filters for listing jobs; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs for this pool.
    pub pool: Option<String>,
    /// Only jobs of this priority.
    pub priority: Option<Priority>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs carrying this label with this value.
    pub label: Option<(String, String)>,
    /// Page size (1..=500).
    pub limit: u32,
    /// Continue after this job (newest first).
    pub after: Option<JobId>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` on the last.
    pub next_page_token: Option<String>,
}

/// Queue figures for one (pool, priority).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// The pool.
    pub pool: String,
    /// The priority.
    pub priority: Option<Priority>,
    /// Jobs waiting now.
    pub queued: u64,
    /// Jobs leased but not started now.
    pub claimed: u64,
    /// Jobs running now.
    pub running: u64,
    /// Jobs completed within the window.
    pub completed: u64,
    /// Attempts that failed within the window (retried or not).
    pub failed: u64,
    /// Jobs dead-lettered within the window.
    pub dead_lettered: u64,
    /// Mean seconds from due to claimed, for claims within the window.
    pub wait_avg_seconds: f64,
    /// 95th percentile of the same.
    pub wait_p95_seconds: f64,
    /// Mean seconds from start to completion, for completions within the window.
    pub run_avg_seconds: f64,
    /// 95th percentile of the same.
    pub run_p95_seconds: f64,
    /// failed / (completed + failed) within the window; 0 when there is neither.
    pub failure_rate: f64,
    /// Age in seconds of the oldest due queued job; 0 when none.
    pub oldest_queued_age_seconds: f64,
}

/// What one reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReapReport {
    /// Expired leases put back in the queue.
    pub requeued: u64,
    /// Expired leases that were the job's last attempt.
    pub dead_lettered: u64,
}

impl ReapReport {
    /// The counts of a reaper pass that handled `jobs` (as they are after it).
    pub fn of(jobs: &[Job]) -> Self {
        let dead = jobs
            .iter()
            .filter(|j| j.state == JobState::DeadLettered)
            .count() as u64;
        ReapReport {
            requeued: jobs.len() as u64 - dead,
            dead_lettered: dead,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_order_and_parse_case_insensitively() {
        assert!(Priority::Critical > Priority::High && Priority::High > Priority::Normal);
        assert!(Priority::Normal > Priority::Low);
        assert_eq!("high".parse::<Priority>().unwrap(), Priority::High);
        assert_eq!(
            " Critical ".parse::<Priority>().unwrap(),
            Priority::Critical
        );
        let err = "urgent".parse::<Priority>().unwrap_err();
        assert_eq!(err.violations[0].field, "priority");
        for p in Priority::ALL {
            assert_eq!(Priority::from_i16(p.as_i16()), Some(*p));
        }
    }

    #[test]
    fn states_round_trip_through_json() {
        for s in JobState::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(&serde_json::from_str::<JobState>(&json).unwrap(), s);
        }
        assert_eq!(
            serde_json::to_string(&JobState::DeadLettered).unwrap(),
            "\"DEAD_LETTERED\""
        );
        assert!(serde_json::from_str::<JobState>("\"dead_lettered\"").is_ok());
        assert!(serde_json::from_str::<JobState>("\"DONE\"").is_err());
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<_> = JobState::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(
            terminal,
            [
                &JobState::Completed,
                &JobState::DeadLettered,
                &JobState::Cancelled
            ]
        );
    }

    #[test]
    fn tenant_ids_are_validated() {
        assert!(TenantId::parse("acme-01").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse(&"a".repeat(65)).is_err());
    }
}

/// The most log text kept per job (every attempt together); chunks beyond it are dropped.
pub const MAX_LOG_BYTES_PER_JOB: u64 = 16 * 1024 * 1024;

/// The largest log chunk accepted.
pub const MAX_LOG_CHUNK_BYTES: usize = 64 * 1024;

/// A piece of one attempt's output, as an agent sent it (secrets already masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// The attempt that wrote it.
    pub attempt: u32,
    /// Its position in the attempt's output, from 0.
    pub seq: u64,
    /// The text.
    pub data: String,
    /// When it was stored.
    pub at: DateTime<Utc>,
}

/// What storing a log chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogAppend {
    /// Stored.
    Stored,
    /// A chunk with this attempt and sequence number was stored already (a retry): unchanged.
    Duplicate,
    /// The job's log is full ([`MAX_LOG_BYTES_PER_JOB`]): dropped.
    Full,
}
