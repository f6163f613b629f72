//! Executors: what running a job means, chosen by `Job.kind`.
//!
//! * `shell`: a `/bin/sh -c` command in its own process group ([`shell`]);
//! * `http`: one plain-HTTP request ([`http`]);
//! * `ingest`: fetches an upload's artifacts and checks them ([`ingest`]);
//! * `sleep`: waits `{"seconds": f64}`; `noop`: succeeds at once.
//!
//! Every kind honours the job's `timeout_seconds` (0: none) and stops when cancelled. Any other
//! kind fails with `unknown executor kind "X"`.

mod http;
mod ingest;
#[cfg(test)]
mod ingest_tests;
mod shell;
#[cfg(test)]
mod shell_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use switchyard_proto::convert::value_to_json;
use switchyard_proto::v1::Job;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::logs::LogSink;
use crate::secrets::Secrets;
use crate::wait;

pub(crate) use ingest::{Artifacts, Link};

/// What every job of the agent shares.
pub(crate) struct Executors {
    /// The local secrets (shell jobs name them; every job's output is masked with them).
    pub(crate) secrets: Secrets,
    /// The default working directory of shell jobs.
    pub(crate) workdir: PathBuf,
}

/// How an attempt ended, as `JobFinished` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Whether it succeeded.
    pub(crate) succeeded: bool,
    /// The process's exit code, when there was one.
    pub(crate) exit_code: Option<i32>,
    /// On failure, why.
    pub(crate) error: String,
}

impl Outcome {
    /// Success without an exit code.
    pub(crate) fn success() -> Self {
        Self {
            succeeded: true,
            exit_code: None,
            error: String::new(),
        }
    }

    /// Failure for `error`.
    pub(crate) fn failure(error: impl Into<String>) -> Self {
        Self {
            succeeded: false,
            exit_code: None,
            error: error.into(),
        }
    }

    /// A process that exited with `code`: success for 0, else `exit status N`.
    pub(crate) fn exited(code: i32) -> Self {
        let outcome = if code == 0 {
            Self::success()
        } else {
            Self::failure(format!("exit status {code}"))
        };
        Self {
            exit_code: Some(code),
            ..outcome
        }
    }

    /// Failure after running for `limit`.
    pub(crate) fn timed_out(limit: Duration) -> Self {
        Self::failure(format!("timed out after {} s", limit.as_secs()))
    }

    /// Failure because the agent stopped the job.
    pub(crate) fn cancelled() -> Self {
        Self::failure("cancelled")
    }
}

/// Runs `job` to its end (or until `cancel`), shipping its output through `logs`; an `ingest`
/// job fetches its artifacts as `artifacts` allows.
pub(crate) async fn execute(
    job: Job,
    artifacts: Option<Artifacts>,
    executors: Arc<Executors>,
    cancel: CancellationToken,
    mut logs: LogSink,
) -> Outcome {
    let timeout = job_timeout(job.timeout_seconds);
    let outcome = match job.kind.as_str() {
        "shell" => shell::run(&job, &executors, &cancel, &mut logs).await,
        "http" => bounded(timeout, &cancel, http::run(&job, &mut logs)).await,
        "ingest" => ingest::run(&job, artifacts, &executors, timeout, &cancel, &mut logs).await,
        "sleep" => bounded(timeout, &cancel, sleep(&job)).await,
        "noop" => Outcome::success(),
        other => Outcome::failure(format!("unknown executor kind {other:?}")),
    };
    logs.finish().await;
    outcome
}

/// A timeout in seconds as a limit; 0 means none.
fn job_timeout(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// `work`, unless `timeout` passes or `cancel` fires first.
async fn bounded(
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    work: impl Future<Output = Outcome>,
) -> Outcome {
    let expired = wait::until(timeout.map(|limit| Instant::now() + limit));
    tokio::select! {
        outcome = work => outcome,
        () = cancel.cancelled() => Outcome::cancelled(),
        () = expired => Outcome::timed_out(timeout.unwrap_or_default()),
    }
}

/// The job's payload as `T`; an absent or `null` payload reads as `{}`.
fn payload<T: DeserializeOwned>(job: &Job) -> Result<T, Outcome> {
    let invalid =
        |e: &dyn std::fmt::Display| Outcome::failure(format!("invalid {} payload: {e}", job.kind));
    let json = match job.payload.clone().map(|v| value_to_json(v, "payload")) {
        Some(Ok(json)) if !json.is_null() => json,
        None | Some(Ok(_)) => serde_json::Value::Object(serde_json::Map::new()),
        Some(Err(e)) => return Err(invalid(&e)),
    };
    serde_json::from_value(json).map_err(|e| invalid(&e))
}

/// The payload of `sleep`.
#[derive(serde::Deserialize)]
struct SleepPayload {
    seconds: f64,
}

/// Waits the payload's `seconds`, then succeeds.
async fn sleep(job: &Job) -> Outcome {
    let seconds = match payload::<SleepPayload>(job) {
        Ok(p) => p.seconds,
        Err(outcome) => return outcome,
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) => {
            tokio::time::sleep(duration).await;
            Outcome::success()
        }
        Err(_) => Outcome::failure(format!(
            "invalid sleep payload: seconds must be a non-negative number, got {seconds}"
        )),
    }
}
