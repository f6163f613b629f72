//! The `ingest` executor: processes an upload.
//!
//! Payload (written by the control plane): `{"metadata": {…}, "artifacts": [{"id", "name",
//! "sha256", "size"}, …]}`. For each artifact it streams `IngestService.FetchArtifact` over the
//! connection of the stream that assigned the job, with the grant its `Assign` carried; it
//! hashes (SHA-256) and counts the bytes as they come and writes them to a file of the
//! artifact's name in a directory of its own under the agent's work directory
//! (`ingest-<job>-<attempt>`), which is removed when the job ends, however it ends. A size or
//! digest that differs from the payload's fails the job. Each verified file is logged as
//! `fetched NAME (N bytes, sha256 HEX)`.
//!
//! Progress is bytes fetched over the payload's total, reported at most every
//! [`PROGRESS_EVERY`] unless it moved [`PROGRESS_STEP`] percent, and 100 once every artifact is
//! verified.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use switchyard_proto::v1::fetch_artifact_response::Part;
use switchyard_proto::v1::ingest_service_client::IngestServiceClient;
use switchyard_proto::v1::{FetchArtifactRequest, Job};
use switchyard_types::is_artifact_name;
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::{Executors, Outcome, bounded, payload};
use crate::logs::LogSink;

/// Progress is reported at most this often…
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// …unless it moved this many percent since the last report.
pub(crate) const PROGRESS_STEP: u8 = 5;

/// A connection to the control plane and the credential its calls carry (none when the
/// connection presents the agent's client certificate).
#[derive(Clone)]
pub(crate) struct Link {
    channel: Channel,
    auth: Option<MetadataValue<Ascii>>,
}

impl Link {
    /// Calls over `channel`, with `auth` as their `authorization` header when given.
    pub(crate) fn new(channel: Channel, auth: Option<MetadataValue<Ascii>>) -> Self {
        Self { channel, auth }
    }

    /// `message` as a request carrying the credential.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(auth) = &self.auth {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        request
    }
}

/// What an `ingest` job fetches with: the grant of its `Assign`, and the connection of the
/// stream that assigned it.
pub(crate) struct Artifacts {
    /// `Assign.artifact_grant`.
    pub(crate) grant: String,
    /// The stream's connection.
    pub(crate) link: Link,
}

/// The payload of `ingest` (its `metadata` is not the agent's business).
#[derive(serde::Deserialize)]
struct IngestPayload {
    #[serde(default)]
    artifacts: Vec<ArtifactRef>,
}

/// One artifact of the payload.
#[derive(serde::Deserialize)]
struct ArtifactRef {
    id: String,
    name: String,
    sha256: String,
    size: u64,
}

/// Fetches and checks every artifact of `job` into its own directory, within `timeout` and
/// until `cancel`; the directory is removed afterwards.
pub(super) async fn run(
    job: &Job,
    artifacts: Option<Artifacts>,
    executors: &Executors,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    logs: &mut LogSink,
) -> Outcome {
    let payload: IngestPayload = match payload(job) {
        Ok(p) => p,
        Err(outcome) => return outcome,
    };
    let Some(artifacts) = artifacts else {
        return Outcome::failure("no artifact grant came with the job: cannot fetch its artifacts");
    };
    // The server validated the names; a path is still never joined.
    if let Some(bad) = payload
        .artifacts
        .iter()
        .find(|a| !is_artifact_name(&a.name))
    {
        return Outcome::failure(format!(
            "invalid ingest payload: artifact name {:?} is not a plain file name",
            bad.name
        ));
    }
    let Some(dir) = job_dir(&executors.workdir, job) else {
        return Outcome::failure(format!("invalid job id {:?}", job.id));
    };
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return Outcome::failure(format!("cannot create {}: {e}", dir.display()));
    }
    let work = fetch_all(&payload.artifacts, &artifacts, &dir, logs);
    let outcome = bounded(timeout, cancel, work).await;
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an ingest job's directory");
    }
    outcome
}

/// The job's own directory under `workdir`; `None` for an id that is not a plain token.
fn job_dir(workdir: &Path, job: &Job) -> Option<PathBuf> {
    let plain = !job.id.is_empty()
        && job.id.len() <= 64
        && job
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    plain.then(|| workdir.join(format!("ingest-{}-{}", job.id, job.attempt)))
}

/// Fetches the artifacts one after the other, reporting progress; 100 once all are verified.
async fn fetch_all(
    list: &[ArtifactRef],
    artifacts: &Artifacts,
    dir: &Path,
    logs: &mut LogSink,
) -> Outcome {
    let total = list.iter().fold(0u64, |sum, a| sum.saturating_add(a.size));
    let mut progress = Progress::new(total);
    let mut client = IngestServiceClient::new(artifacts.link.channel.clone());
    for artifact in list {
        if let Err(error) =
            fetch_one(&mut client, artifact, artifacts, dir, &mut progress, logs).await
        {
            return Outcome::failure(error);
        }
    }
    logs.progress(100).await;
    Outcome::success()
}

/// Streams one artifact into `dir`, checking its size and digest against the payload's.
async fn fetch_one(
    client: &mut IngestServiceClient<Channel>,
    artifact: &ArtifactRef,
    artifacts: &Artifacts,
    dir: &Path,
    progress: &mut Progress,
    logs: &mut LogSink,
) -> Result<(), String> {
    let name = &artifact.name;
    let path = dir.join(name);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!("two artifacts are named {name:?}")
            } else {
                format!("cannot create {}: {e}", path.display())
            }
        })?;
    let failed = |status: tonic::Status| {
        format!(
            "fetching artifact {name:?} ({}) failed: {:?}: {}",
            artifact.id,
            status.code(),
            status.message()
        )
    };
    let request = artifacts.link.request(FetchArtifactRequest {
        artifact_id: artifact.id.clone(),
        grant: artifacts.grant.clone(),
    });
    let mut stream = client
        .fetch_artifact(request)
        .await
        .map_err(failed)?
        .into_inner();
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(message) = stream.message().await.map_err(failed)? {
        // The first message describes the artifact; the payload is what the bytes must match.
        let Some(Part::Chunk(bytes)) = message.part else {
            continue;
        };
        size = size.saturating_add(bytes.len() as u64);
        if size > artifact.size {
            return Err(size_mismatch(
                artifact,
                &format!("more than {}", artifact.size),
            ));
        }
        hasher.update(&bytes);
        file.write_all(&bytes)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        progress.add(bytes.len() as u64, logs).await;
    }
    file.flush()
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if size != artifact.size {
        return Err(size_mismatch(artifact, &size.to_string()));
    }
    let sha256 = hex(&hasher.finalize());
    if !sha256.eq_ignore_ascii_case(&artifact.sha256) {
        return Err(format!(
            "artifact {name:?} ({}): sha256 mismatch: expected {}, got {sha256}",
            artifact.id, artifact.sha256
        ));
    }
    logs.write(format!("fetched {name} ({size} bytes, sha256 {sha256})\n").as_bytes())
        .await;
    Ok(())
}

fn size_mismatch(artifact: &ArtifactRef, got: &str) -> String {
    format!(
        "artifact {:?} ({}): size mismatch: expected {} bytes, got {got}",
        artifact.name, artifact.id, artifact.size
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes fetched over the total, and when progress was last reported.
struct Progress {
    total: u64,
    done: u64,
    /// The last percent reported, and when.
    sent: Option<(u8, Instant)>,
}

impl Progress {
    fn new(total: u64) -> Self {
        Self {
            total,
            done: 0,
            sent: None,
        }
    }

    /// Percent done; never 100 before the end (that is reported once everything is verified).
    fn percent(&self) -> u8 {
        if self.total == 0 {
            return 0;
        }
        let percent = u128::from(self.done.min(self.total)) * 100 / u128::from(self.total);
        u8::try_from(percent).unwrap_or(100).min(99)
    }

    /// Counts `n` more bytes; reports the percent when it moved [`PROGRESS_STEP`], or moved at
    /// all and [`PROGRESS_EVERY`] has passed.
    async fn add(&mut self, n: u64, logs: &LogSink) {
        self.done = self.done.saturating_add(n);
        let percent = self.percent();
        let due = match self.sent {
            None => percent > 0,
            Some((last, at)) => {
                percent >= last.saturating_add(PROGRESS_STEP)
                    || (percent > last && at.elapsed() >= PROGRESS_EVERY)
            }
        };
        if due {
            logs.progress(percent).await;
            self.sent = Some((percent, Instant::now()));
        }
    }
}
