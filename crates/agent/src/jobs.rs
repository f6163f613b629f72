//! The jobs this agent runs: one task per attempt, stopped through its cancellation token,
//! reporting its output and its end as [`JobEvent`]s to the agent loop.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use switchyard_proto::v1::{HeldJob, Job, JobFinished, JobProgress, LogChunk};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::executor::{self, Artifacts, Executors, Outcome};
use crate::logs::LogSink;

/// `JobFinished.error` is at most 4096 characters; the server counts bytes.
const MAX_ERROR_BYTES: usize = 4096;

/// One attempt of one job: what every report names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct JobKey {
    /// The job id.
    pub(crate) job_id: String,
    /// The attempt (fencing token).
    pub(crate) attempt: u32,
}

impl JobKey {
    /// The key of attempt `attempt` of job `job_id`.
    pub(crate) fn new(job_id: impl Into<String>, attempt: u32) -> Self {
        Self {
            job_id: job_id.into(),
            attempt,
        }
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.job_id, self.attempt)
    }
}

/// What a job task tells the agent loop, in order: its log chunks and progress, then its end.
#[derive(Debug)]
pub(crate) enum JobEvent {
    /// A chunk of output, masked.
    Log(LogChunk),
    /// How far it is.
    Progress(JobProgress),
    /// The executor returned.
    Ended {
        /// The attempt.
        key: JobKey,
        /// How it went.
        outcome: Outcome,
    },
}

/// Why the agent stopped a job before it ended by itself; decides what is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The server cancelled it: nothing to report.
    Cancelled,
    /// The attempt is no longer ours: nothing to report.
    LeaseLost,
    /// Self-fencing: reported as abandoned after the next `Welcome`.
    Abandoned,
    /// The agent is shutting down and the grace period ran out: reported as failed.
    Shutdown,
}

/// A job task the agent holds.
struct Running {
    cancel: CancellationToken,
    stop: Option<Stop>,
    /// When it was assigned: its lease began about then.
    since: Instant,
}

/// The running jobs, by attempt.
pub(crate) struct Jobs {
    executors: Arc<Executors>,
    events: mpsc::Sender<JobEvent>,
    running: HashMap<JobKey, Running>,
}

impl Jobs {
    /// An empty table whose tasks report on `events`.
    pub(crate) fn new(executors: Executors, events: mpsc::Sender<JobEvent>) -> Self {
        Self {
            executors: Arc::new(executors),
            events,
            running: HashMap::new(),
        }
    }

    /// Starts a task running `job` (an `ingest` job fetches `artifacts`); it ends with a
    /// [`JobEvent::Ended`], even if it panics.
    pub(crate) fn start(&mut self, key: JobKey, job: Job, artifacts: Option<Artifacts>) {
        let cancel = CancellationToken::new();
        let (executors, events) = (self.executors.clone(), self.events.clone());
        let (task_key, task_cancel) = (key.clone(), cancel.clone());
        tokio::spawn(async move {
            let masker = executors.secrets.masker();
            let logs = LogSink::new(task_key.clone(), masker, events.clone());
            let work = tokio::spawn(executor::execute(
                job,
                artifacts,
                executors,
                task_cancel,
                logs,
            ));
            let outcome = work.await.unwrap_or_else(|e| {
                tracing::error!(job = %task_key, error = %e, "executor task failed");
                Outcome::failure("the agent's executor crashed")
            });
            let _ = events
                .send(JobEvent::Ended {
                    key: task_key,
                    outcome,
                })
                .await;
        });
        let since = Instant::now();
        let entry = Running {
            cancel,
            stop: None,
            since,
        };
        self.running.insert(key, entry);
    }

    /// Whether the agent holds `key` (running or being stopped).
    pub(crate) fn contains(&self, key: &JobKey) -> bool {
        self.running.contains_key(key)
    }

    /// How many job tasks hold a slot, stopping ones included.
    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    /// Why `key` was stopped, if it was.
    pub(crate) fn stop_reason(&self, key: &JobKey) -> Option<Stop> {
        self.running.get(key).and_then(|r| r.stop)
    }

    /// Stops `key` unless it is already stopping; false when it was not running.
    pub(crate) fn stop(&mut self, key: &JobKey, why: Stop) -> bool {
        match self.running.get_mut(key) {
            Some(running) if running.stop.is_none() => {
                running.stop = Some(why);
                running.cancel.cancel();
                true
            }
            Some(_) | None => false,
        }
    }

    /// Stops every job not already stopping.
    pub(crate) fn stop_all(&mut self, why: Stop) {
        let keys: Vec<_> = self.held().map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.stop(&key, why);
        }
    }

    /// The jobs running and not being stopped, with when their lease began.
    fn held(&self) -> impl Iterator<Item = (&JobKey, Instant)> {
        self.running
            .iter()
            .filter(|(_, r)| r.stop.is_none())
            .map(|(k, r)| (k, r.since))
    }

    /// The jobs to list in `Hello.running`.
    pub(crate) fn held_jobs(&self) -> Vec<HeldJob> {
        self.held()
            .map(|(k, _)| HeldJob {
                job_id: k.job_id.clone(),
                attempt: k.attempt,
            })
            .collect()
    }

    /// When each held job must be stopped by self-fencing: `limit` after its lease was last
    /// renewed (at `renewed`, or at its assignment when that is later).
    fn fence_times(
        &self,
        renewed: Option<Instant>,
        limit: Duration,
    ) -> impl Iterator<Item = (&JobKey, Instant)> {
        self.held()
            .map(move |(k, since)| (k, renewed.map_or(since, |r| r.max(since)) + limit))
    }

    /// The earliest instant self-fencing must stop a job.
    pub(crate) fn fence_deadline(
        &self,
        renewed: Option<Instant>,
        limit: Duration,
    ) -> Option<Instant> {
        self.fence_times(renewed, limit).map(|(_, at)| at).min()
    }

    /// The held jobs self-fencing must stop at `now`.
    pub(crate) fn overdue(
        &self,
        renewed: Option<Instant>,
        limit: Duration,
        now: Instant,
    ) -> Vec<JobKey> {
        self.fence_times(renewed, limit)
            .filter(|(_, at)| *at <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Forgets a job whose task ended; returns why it was stopped (`None`: it ended by
    /// itself), or `None` for a key it did not hold.
    pub(crate) fn ended(&mut self, key: &JobKey) -> Option<Option<Stop>> {
        self.running.remove(key).map(|r| r.stop)
    }

    /// The `JobFinished` report of `outcome`: error masked (it must never carry a secret
    /// value) and within the protocol's 1-4096 characters.
    pub(crate) fn report(&self, key: &JobKey, outcome: Outcome) -> JobFinished {
        let mut error = self.executors.secrets.mask(&outcome.error);
        error.truncate(error.floor_char_boundary(MAX_ERROR_BYTES));
        if !outcome.succeeded && error.is_empty() {
            error = "failed".to_owned();
        }
        JobFinished {
            job_id: key.job_id.clone(),
            attempt: key.attempt,
            succeeded: outcome.succeeded,
            exit_code: outcome.exit_code,
            error,
        }
    }
}
