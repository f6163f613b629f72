//! Runs one job through [`execute`] the way the agent does, and collects what it reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use switchyard_proto::convert::json_to_value;
use switchyard_proto::v1::{Job, LogChunk};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Artifacts, Executors, Outcome, execute};
use crate::jobs::{JobEvent, JobKey};
use crate::logs::LogSink;
use crate::secrets::Secrets;

/// A job of `kind` with `payload`, attempt 1.
pub(super) fn job(kind: &str, payload: serde_json::Value) -> Job {
    Job {
        id: "job-1".into(),
        kind: kind.into(),
        attempt: 1,
        payload: Some(json_to_value(payload)),
        ..Job::default()
    }
}

/// What a job reported.
pub(super) struct Ran {
    pub(super) outcome: Outcome,
    pub(super) chunks: Vec<LogChunk>,
    /// The percents it reported, in order.
    pub(super) progress: Vec<u8>,
}

impl Ran {
    /// The whole output.
    pub(super) fn output(&self) -> String {
        self.chunks.iter().map(|c| c.data.as_str()).collect()
    }
}

/// Runs `job` in `workdir` with `secrets`, stopping it when `cancel` fires.
pub(super) async fn run(
    job: Job,
    secrets: &[(&str, &str)],
    workdir: &Path,
    cancel: CancellationToken,
) -> Ran {
    run_fetching(job, None, secrets, workdir, cancel).await
}

/// [`run`] with the `artifacts` an `ingest` job fetches.
pub(super) async fn run_fetching(
    job: Job,
    artifacts: Option<Artifacts>,
    secrets: &[(&str, &str)],
    workdir: &Path,
    cancel: CancellationToken,
) -> Ran {
    let values: BTreeMap<_, _> = secrets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let executors = Arc::new(Executors {
        secrets: Secrets::new(values),
        workdir: workdir.to_owned(),
    });
    let (tx, mut rx) = mpsc::channel(1024);
    let key = JobKey::new(job.id.clone(), job.attempt);
    let logs = LogSink::new(key, executors.secrets.masker(), tx);
    // Collect while the job runs: a full channel would stall it.
    let collector = tokio::spawn(async move {
        let (mut chunks, mut progress) = (Vec::new(), Vec::new());
        while let Some(event) = rx.recv().await {
            match event {
                JobEvent::Log(chunk) => chunks.push(chunk),
                JobEvent::Progress(p) => progress.push(u8::try_from(p.percent).unwrap()),
                JobEvent::Ended { .. } => unreachable!("execute reports no end itself"),
            }
        }
        (chunks, progress)
    });
    let outcome = execute(job, artifacts, executors, cancel, logs).await;
    let (chunks, progress) = collector.await.expect("collector");
    Ran {
        outcome,
        chunks,
        progress,
    }
}

/// Runs `job` in a fresh temporary directory, without secrets or cancellation.
pub(super) async fn run_simple(job: Job) -> Ran {
    let dir = tempfile::tempdir().expect("tempdir");
    run(job, &[], dir.path(), CancellationToken::new()).await
}
