//! Ingest (DESIGN §3.7): uploads of metadata and files. Each file is streamed to the artifact
//! store under a generated key, hashed and counted on the way; then, in one transaction, the
//! artifacts are recorded and the upload's job (kind `ingest`) is enqueued in the ingest pool.
//! An upload that fails, is refused or is cut off part-way stores nothing: the content already
//! written is deleted before the error is returned.
//!
//! An agent processes the job: it fetches the artifacts with the grant its `Assign` carried
//! ([`ArtifactGrants`], [`Ingest::fetch`]) and reports progress, which [`Ingest::status`] shows
//! while the job runs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _};
use switchyard_blobs::{BlobWriter, Blobs};
use switchyard_store::ArtifactStore;
use switchyard_types::{
    Artifact, ArtifactFilter, ArtifactGrant, ArtifactId, ArtifactState, Error, ErrorKind,
    INGEST_KIND, IngestStatus, JobId, JobState, Labels, NewArtifact, NewJob, Page, Principal,
    Priority, Result, is_artifact_name,
};
use tokio_stream::wrappers::ReceiverStream;

use crate::paging::{page, token_id};
use crate::queue::Queue;
use crate::validate::Violations;

/// Ingest's limits and defaults.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The pool whose agents process uploads.
    pub pool: String,
    /// The largest file, in bytes.
    pub max_file_bytes: u64,
    /// The largest upload (all its files), in bytes.
    pub max_upload_bytes: u64,
    /// The most files in one upload.
    pub max_files: usize,
    /// How long artifacts are kept.
    pub retention: Duration,
    /// How long an upload's job may run.
    pub job_timeout: Duration,
    /// How often the retention sweeper looks for expired artifacts.
    pub sweep_every: Duration,
    /// The longest an upload may take to send its files; content older than twice this that
    /// no record names is an orphan.
    pub upload_timeout: Duration,
    /// How often (across all replicas, one at a time) the artifact store is swept for orphans.
    pub orphan_sweep_every: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            pool: "ingest".to_owned(),
            max_file_bytes: 1 << 30,
            max_upload_bytes: 4 << 30,
            max_files: 100,
            retention: Duration::from_secs(30 * 86_400),
            job_timeout: Duration::from_secs(3600),
            sweep_every: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(6 * 3600),
            orphan_sweep_every: Duration::from_secs(3600),
        }
    }
}

/// The largest metadata object, serialised.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The media type of a file uploaded without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// How often a status watch looks at the job.
pub const STATUS_POLL: Duration = Duration::from_millis(250);

/// Artifacts whose retention ended and whose content the sweeper deleted.
pub const ARTIFACTS_EXPIRED: &str = "switchyard_artifacts_expired_total";
/// The bytes of every tenant's stored artifacts.
pub const ARTIFACTS_STORED_BYTES: &str = "switchyard_artifacts_stored_bytes";
/// Content the orphan sweep deleted, by `kind`: `object` (complete, but no record names it) or
/// `staging` (a write cut off by a crash).
pub const ARTIFACT_ORPHANS_DELETED: &str = "switchyard_artifact_orphans_deleted_total";
/// The orphan sweep's task name, whose turns replicas take.
const ORPHAN_SWEEP_TASK: &str = "artifact-orphan-sweep";
/// How many listed keys the orphan sweep looks up at once.
const ORPHAN_LOOKUP_BATCH: usize = 500;
/// The most orphans one sweep deletes; the rest wait for the next turn.
const ORPHAN_SWEEP_LIMIT: usize = 10_000;
/// How long a sweeper holds the artifacts it claimed: another replica takes them after that.
const SWEEP_LEASE: Duration = Duration::from_secs(120);
/// The most artifacts one sweep pass claims.
const SWEEP_BATCH: u32 = 100;

/// One part of an upload, as the edges receive it: a file begins, or the current file's next
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadPart {
    /// A file begins.
    File {
        /// Its name.
        name: String,
        /// Its media type, if the client gave one.
        content_type: Option<String>,
    },
    /// The current file's next bytes.
    Chunk(Bytes),
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    /// The upload's job.
    pub job: JobId,
    /// Its artifacts, in upload order.
    pub artifacts: Vec<Artifact>,
}

/// A page request of artifacts.
#[derive(Debug, Clone, Default)]
pub struct ListArtifacts {
    /// Only this upload's.
    pub job: Option<JobId>,
    /// At most this many (default 50, 1–500).
    pub limit: Option<u32>,
    /// From a previous page's `next_page_token`.
    pub page_token: Option<String>,
}

const PAGE_TOKEN_PREFIX: &str = "a1.";

/// The shortest retention policy a tenant may set.
pub const MIN_RETENTION: Duration = Duration::from_secs(1);
/// The longest retention policy a tenant may set (ten years).
pub const MAX_RETENTION: Duration = Duration::from_secs(3650 * 86_400);

/// How long a tenant's artifacts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The period, from each artifact's upload.
    pub period: Duration,
    /// Whether it is the tenant's own policy (else the installation's default).
    pub tenant_policy: bool,
}

/// Grants that let the agent running an upload's job fetch that job's artifacts: signed,
/// short-lived tokens naming the tenant, the job and the attempt, which are not access tokens.
/// Implemented with the installation's token keys outside the domain, and given to
/// [`Agents`](crate::Agents) (which issues one with each `Assign` of an `ingest` job) and to
/// [`Ingest`] (which checks them in [`Ingest::fetch`]).
pub trait ArtifactGrants: Send + Sync + 'static {
    /// `grant`, signed, valid for `ttl` from now.
    fn issue(&self, grant: &ArtifactGrant, ttl: Duration) -> Result<String>;

    /// What `grant` grants; `PermissionDenied` when it is not a valid grant (forged, expired,
    /// an access token, garbage).
    fn verify(&self, grant: &str) -> Result<ArtifactGrant>;
}

/// The ingest service: uploads, their status, and their artifacts.
#[derive(Clone)]
pub struct Ingest {
    store: Arc<dyn ArtifactStore>,
    blobs: Blobs,
    queue: Queue,
    config: IngestConfig,
    grants: Option<Arc<dyn ArtifactGrants>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("blobs", &self.blobs)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Ingest over `store` (the records) and `blobs` (the content), reading jobs through
    /// `queue`.
    pub fn new(
        store: Arc<dyn ArtifactStore>,
        blobs: Blobs,
        queue: Queue,
        config: IngestConfig,
    ) -> Self {
        Ingest {
            store,
            blobs,
            queue,
            config,
            grants: None,
        }
    }

    /// Lets agents fetch artifacts with the grants `grants` checks (without, [`Ingest::fetch`]
    /// refuses every call).
    pub fn with_grants(mut self, grants: Arc<dyn ArtifactGrants>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// The settings in force.
    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// Stores an upload: `metadata` (a JSON object) and the files `parts` carries, then records
    /// them and enqueues the upload's job. `parts` yields an error when the client's stream
    /// breaks off; that error is returned, and nothing is stored. The work runs on its own
    /// task, so a caller that goes away mid-upload still leaves nothing behind.
    pub async fn upload<S>(
        &self,
        who: &Principal,
        metadata: serde_json::Value,
        parts: S,
    ) -> Result<Uploaded>
    where
        S: Stream<Item = Result<UploadPart>> + Send + 'static,
    {
        let mut v = Violations::default();
        if !metadata.is_object() {
            v.add("metadata", "must be a JSON object");
        } else if serde_json::to_vec(&metadata).map_or(usize::MAX, |b| b.len()) > MAX_METADATA_BYTES
        {
            v.add(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes"),
            );
        }
        v.finish()?;
        let this = self.clone();
        let who = who.clone();
        tokio::spawn(async move { this.store_upload(&who, metadata, parts).await })
            .await
            .map_err(|e| Error::internal(format!("upload task failed: {e}")))?
    }

    async fn store_upload<S>(
        &self,
        who: &Principal,
        metadata: serde_json::Value,
        parts: S,
    ) -> Result<Uploaded>
    where
        S: Stream<Item = Result<UploadPart>> + Send,
    {
        let mut written: Vec<NewArtifact> = Vec::new();
        let outcome = self.write_files(who, parts, &mut written).await;
        let recorded = match outcome {
            Ok(()) => self.record(who, metadata, &written).await,
            Err(e) => Err(e),
        };
        if recorded.is_err() {
            self.delete_all(&written).await;
        }
        recorded
    }

    /// Streams every file of `parts` to the artifact store, pushing each finished one onto
    /// `written` (so the caller can delete them all on a failure). It may take at most
    /// [`IngestConfig::upload_timeout`]; only the client's part is bounded (recording is one
    /// short transaction), and the orphan sweep leaves content alone for twice that.
    async fn write_files<S>(
        &self,
        who: &Principal,
        parts: S,
        written: &mut Vec<NewArtifact>,
    ) -> Result<()>
    where
        S: Stream<Item = Result<UploadPart>> + Send,
    {
        let mut parts = std::pin::pin!(parts);
        let mut current: Option<(PendingFile, BlobWriter)> = None;
        let mut total: u64 = 0;
        let limit = self.config.upload_timeout;
        let sending = async {
            while let Some(part) = parts.next().await {
                match part? {
                    UploadPart::File { name, content_type } => {
                        if let Some((file, writer)) = current.take() {
                            written.push(file.finish(writer).await?);
                        }
                        let index = written.len();
                        if index >= self.config.max_files {
                            return Err(Error::too_large(format!(
                                "an upload carries at most {} files",
                                self.config.max_files
                            )));
                        }
                        let file = PendingFile::new(&who.tenant, index, name, content_type)?;
                        let writer = self
                            .blobs
                            .writer(&file.storage_key, self.config.max_file_bytes)
                            .await?;
                        current = Some((file, writer));
                    }
                    UploadPart::Chunk(bytes) => {
                        let Some((_, writer)) = current.as_mut() else {
                            return Err(Error::invalid("file", "bytes came before any file began"));
                        };
                        total = total.saturating_add(bytes.len() as u64);
                        if total > self.config.max_upload_bytes {
                            return Err(Error::too_large(format!(
                                "an upload may carry at most {} bytes",
                                self.config.max_upload_bytes
                            )));
                        }
                        writer.write(bytes).await?;
                    }
                }
            }
            if let Some((file, writer)) = current.take() {
                written.push(file.finish(writer).await?);
            }
            Ok::<(), Error>(())
        };
        let result = tokio::time::timeout(limit, sending)
            .await
            .unwrap_or_else(|_| {
                Err(Error::too_large(format!(
                    "an upload may take at most {} s to send its files",
                    limit.as_secs()
                )))
            });
        if let Some((_, writer)) = current
            && let Err(e) = writer.abort().await
        {
            tracing::warn!(error = %e, "aborting a partial artifact failed");
        }
        result
    }

    /// Records the artifacts and enqueues the upload's job, in one transaction.
    async fn record(
        &self,
        who: &Principal,
        metadata: serde_json::Value,
        artifacts: &[NewArtifact],
    ) -> Result<Uploaded> {
        let listed: Vec<serde_json::Value> = artifacts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id.to_string(),
                    "name": a.name,
                    "content_type": a.content_type,
                    "sha256": a.sha256,
                    "size": a.size,
                })
            })
            .collect();
        let job = NewJob {
            tenant: who.tenant.clone(),
            pool: self.config.pool.clone(),
            kind: INGEST_KIND.to_owned(),
            payload: serde_json::json!({ "metadata": metadata, "artifacts": listed }),
            priority: Priority::Normal,
            labels: Labels::new(),
            tags: Labels::new(),
            max_attempts: 3,
            timeout: self.config.job_timeout,
            run_at: None,
            delay: Duration::ZERO,
            idempotency_key: None,
            concurrency_key: None,
            concurrency_limit: 0,
        };
        let (job, artifacts) = self
            .store
            .create_upload(&job, artifacts, self.config.retention)
            .await?;
        self.queue.announce(&job);
        self.queue.wake(job.pool.clone()).await;
        tracing::info!(job = %job.id, files = artifacts.len(), by = %who.subject, "upload stored");
        Ok(Uploaded {
            job: job.id,
            artifacts,
        })
    }

    async fn delete_all(&self, artifacts: &[NewArtifact]) {
        for a in artifacts {
            if let Err(e) = self.blobs.delete(&a.storage_key).await {
                tracing::warn!(error = %e, key = %a.storage_key, "deleting an abandoned artifact failed");
            }
        }
    }

    /// The status of the caller's upload (or any job of theirs) `job`; while it runs, with the
    /// progress its agent last reported for the running attempt.
    pub async fn status(&self, who: &Principal, job: JobId) -> Result<IngestStatus> {
        let job = self.queue.get(who, job).await?;
        let reported = if job.state == JobState::Running {
            self.store.job_progress(&who.tenant, job.id).await?
        } else {
            None
        };
        Ok(IngestStatus::of(&job, reported))
    }

    /// The status of the caller's job `job` now and at every change (of state or progress),
    /// until it is final.
    pub async fn watch(
        &self,
        who: &Principal,
        job: JobId,
    ) -> Result<ReceiverStream<Result<IngestStatus>>> {
        let first = self.status(who, job).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let this = self.clone();
        let who = who.clone();
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            while !last.is_final() {
                tokio::select! {
                    () = tokio::time::sleep(STATUS_POLL) => {}
                    () = tx.closed() => return,
                }
                match this.status(&who, job).await {
                    Ok(now) if now != last => {
                        last = now;
                        if tx.send(Ok(last.clone())).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// A page of the caller's artifacts, newest first.
    pub async fn artifacts(&self, who: &Principal, req: ListArtifacts) -> Result<Page<Artifact>> {
        let mut v = Violations::default();
        let limit = req.limit.unwrap_or(50);
        v.range("limit", limit.into(), 1, 500);
        let before = token_id(&mut v, PAGE_TOKEN_PREFIX, req.page_token.as_deref()).map(ArtifactId);
        v.finish()?;
        let filter = ArtifactFilter {
            job: req.job,
            limit: limit + 1,
            before,
        };
        let items = self.store.artifacts(&who.tenant, &filter).await?;
        Ok(page(items, limit, PAGE_TOKEN_PREFIX, |a| a.id.0))
    }

    /// One of the caller's artifacts.
    pub async fn artifact(&self, who: &Principal, id: ArtifactId) -> Result<Artifact> {
        self.store.artifact(&who.tenant, id).await
    }

    /// One of the caller's artifacts and its content, streamed. `Conflict` when it has expired.
    pub async fn download(
        &self,
        who: &Principal,
        id: ArtifactId,
    ) -> Result<(Artifact, BoxStream<'static, Result<Bytes>>)> {
        let artifact = self.artifact(who, id).await?;
        self.content(artifact).await
    }

    /// An artifact and its content, streamed, for the agent `who` processing its upload, on
    /// the authority of `grant` (the job's `Assign` carried it): `PermissionDenied` unless the
    /// grant is valid and of the agent's tenant, `NotFound` unless the artifact is the grant's
    /// job's (another tenant's is not found either), `Conflict` when the grant's attempt is
    /// over (the job finished, was cancelled or went to another attempt) or the artifact has
    /// expired.
    pub async fn fetch(
        &self,
        who: &Principal,
        grant: &str,
        id: ArtifactId,
    ) -> Result<(Artifact, BoxStream<'static, Result<Bytes>>)> {
        let Some(grants) = &self.grants else {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "this server issues no artifact grants",
            ));
        };
        let grant = grants.verify(grant)?;
        if grant.tenant != who.tenant {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the artifact grant is for another tenant than the agent's",
            ));
        }
        let artifact = self.store.artifact(&grant.tenant, id).await?;
        if artifact.job != grant.job {
            return Err(Error::not_found(format_args!("artifact {id}")));
        }
        let job = self.queue.get(who, grant.job).await?;
        if job.attempt != grant.attempt
            || !matches!(job.state, JobState::Claimed | JobState::Running)
        {
            return Err(Error::conflict(format!(
                "the artifact grant was for attempt {} of job {}, which is over",
                grant.attempt, grant.job
            )));
        }
        self.content(artifact).await
    }

    /// `artifact` with its content, streamed; `Conflict` when it has expired.
    async fn content(
        &self,
        artifact: Artifact,
    ) -> Result<(Artifact, BoxStream<'static, Result<Bytes>>)> {
        if artifact.state == ArtifactState::Expired {
            return Err(Error::conflict(format!(
                "artifact {} has expired: its content was deleted",
                artifact.id
            )));
        }
        let content = self.blobs.read(&artifact.storage_key).await?;
        Ok((artifact, content.chunks))
    }
}

impl Ingest {
    /// The caller's tenant's retention: its policy, or the installation's default.
    pub async fn retention(&self, who: &Principal) -> Result<Retention> {
        let policy = self.store.retention(&who.tenant).await?;
        Ok(Retention {
            period: policy.unwrap_or(self.config.retention),
            tenant_policy: policy.is_some(),
        })
    }

    /// Sets (`Some`, [`MIN_RETENTION`] to [`MAX_RETENTION`], whole seconds) or clears (`None`:
    /// back to the default) the caller's tenant's retention policy. It applies to the stored
    /// artifacts too (each expires its period after its upload, so a shorter policy expires
    /// older ones at the next sweep). Returns the retention in force and how many stored
    /// artifacts were re-dated.
    pub async fn set_retention(
        &self,
        who: &Principal,
        period: Option<Duration>,
    ) -> Result<(Retention, u64)> {
        if let Some(p) = period
            && !(MIN_RETENTION..=MAX_RETENTION).contains(&p)
        {
            return Err(Error::invalid(
                "retention_seconds",
                format!(
                    "must be between {} and {} seconds",
                    MIN_RETENTION.as_secs(),
                    MAX_RETENTION.as_secs()
                ),
            ));
        }
        let redated = self
            .store
            .set_retention(&who.tenant, period, self.config.retention)
            .await?;
        tracing::info!(tenant = %who.tenant, retention_seconds = period.map(|p| p.as_secs()), redated, by = %who.subject, "artifact retention set");
        let retention = Retention {
            period: period.unwrap_or(self.config.retention),
            tenant_policy: period.is_some(),
        };
        Ok((retention, redated))
    }

    /// Expires artifacts whose retention has ended, every [`IngestConfig::sweep_every`], until
    /// `shutdown` fires. Every replica runs one; the store leases each due artifact to one
    /// sweeper, so each is deleted and marked `EXPIRED` once. It also refreshes the
    /// [`ARTIFACTS_STORED_BYTES`] gauge and, when this replica takes the turn (one per
    /// [`IngestConfig::orphan_sweep_every`] across replicas), sweeps orphans.
    pub async fn run_sweeper(&self, shutdown: tokio_util::sync::CancellationToken) {
        metrics::describe_counter!(
            ARTIFACTS_EXPIRED,
            "Artifacts expired by the retention sweeper."
        );
        metrics::describe_gauge!(
            ARTIFACTS_STORED_BYTES,
            "Bytes of every tenant's stored artifacts."
        );
        metrics::describe_counter!(
            ARTIFACT_ORPHANS_DELETED,
            "Artifact content deleted by the orphan sweep: objects no record names, staging files of interrupted writes."
        );
        let mut tick = tokio::time::interval(self.config.sweep_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::warn!(error = %e, "artifact sweep failed");
                    }
                    if let Err(e) = self.sweep_orphans_in_turn().await {
                        tracing::warn!(error = %e, "artifact orphan sweep failed");
                    }
                }
            }
        }
    }

    /// One sweep: deletes the content of every artifact due for expiry (in batches) and marks
    /// it `EXPIRED`. Returns how many this call expired.
    pub async fn sweep(&self) -> Result<u64> {
        let mut expired = 0;
        loop {
            let due = self.store.due_expirations(SWEEP_BATCH, SWEEP_LEASE).await?;
            let full = due.len() == SWEEP_BATCH as usize;
            for artifact in due {
                // Content first: a sweeper that dies in between leaves the row to be claimed
                // again after the lease, and deleting absent content succeeds.
                self.blobs.delete(&artifact.storage_key).await?;
                if self.store.mark_expired(artifact.id).await? {
                    expired += 1;
                    metrics::counter!(ARTIFACTS_EXPIRED).increment(1);
                    tracing::info!(artifact = %artifact.id, tenant = %artifact.tenant, "artifact expired");
                }
            }
            if !full {
                break;
            }
        }
        #[allow(clippy::cast_precision_loss)] // byte totals stay far below 2^52
        metrics::gauge!(ARTIFACTS_STORED_BYTES).set(self.store.stored_bytes().await? as f64);
        Ok(expired)
    }

    /// Sweeps orphans if this replica takes the turn: `None` when another replica has it.
    async fn sweep_orphans_in_turn(&self) -> Result<Option<OrphanSweep>> {
        if !self
            .store
            .take_turn(ORPHAN_SWEEP_TASK, self.config.orphan_sweep_every)
            .await?
        {
            return Ok(None);
        }
        self.sweep_orphans().await.map(Some)
    }

    /// One orphan sweep: deletes content that was last changed more than twice
    /// [`IngestConfig::upload_timeout`] ago and that no artifact's record names (a replica died
    /// between writing an upload's files and recording them), and the staging files of writes
    /// cut off by a crash. Younger content is left alone: its upload may still be running.
    pub async fn sweep_orphans(&self) -> Result<OrphanSweep> {
        let grace = self.config.upload_timeout.saturating_mul(2);
        let before = std::time::SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut sweep = OrphanSweep {
            staging_files: self.blobs.remove_abandoned_writes(before).await?,
            ..OrphanSweep::default()
        };
        // Listed first, deleted after: a listing is not disturbed by its own deletions.
        let mut orphans = Vec::new();
        let mut listed = self
            .blobs
            .listed_before(chrono::DateTime::<Utc>::from(before))
            .chunks(ORPHAN_LOOKUP_BATCH);
        while let Some(batch) = listed.next().await {
            let batch = batch.into_iter().collect::<Result<Vec<_>>>()?;
            let keys: Vec<String> = batch.iter().map(|s| s.key.clone()).collect();
            let unrecorded = self.store.unrecorded_keys(&keys).await?;
            orphans.extend(batch.into_iter().filter(|s| unrecorded.contains(&s.key)));
            if orphans.len() >= ORPHAN_SWEEP_LIMIT {
                orphans.truncate(ORPHAN_SWEEP_LIMIT);
                break;
            }
        }
        drop(listed);
        for orphan in orphans {
            self.blobs.delete(&orphan.key).await?;
            tracing::info!(key = %orphan.key, size = orphan.size, "orphaned artifact content deleted");
            sweep.objects += 1;
            sweep.bytes += orphan.size;
        }
        metrics::counter!(ARTIFACT_ORPHANS_DELETED, "kind" => "object").increment(sweep.objects);
        metrics::counter!(ARTIFACT_ORPHANS_DELETED, "kind" => "staging")
            .increment(sweep.staging_files);
        if sweep != OrphanSweep::default() {
            tracing::info!(
                objects = sweep.objects,
                bytes = sweep.bytes,
                staging_files = sweep.staging_files,
                "artifact orphan sweep"
            );
        }
        Ok(sweep)
    }
}

/// What one orphan sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanSweep {
    /// Complete objects no record named.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Staging files of writes cut off by a crash.
    pub staging_files: u64,
}

/// A file whose content is being written.
struct PendingFile {
    id: ArtifactId,
    name: String,
    content_type: String,
    storage_key: String,
}

impl PendingFile {
    /// Checks the client's name and media type for file `index`, and generates its key.
    fn new(
        tenant: &switchyard_types::TenantId,
        index: usize,
        name: String,
        content_type: Option<String>,
    ) -> Result<PendingFile> {
        let mut v = Violations::default();
        if !is_artifact_name(&name) {
            v.add(
                &format!("files[{index}].name"),
                "must be 1-255 bytes without '/', '\\' or control characters, and not '.' or '..'",
            );
        }
        let content_type = content_type
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        v.key(&format!("files[{index}].content_type"), &content_type, 255);
        v.finish()?;
        let id = ArtifactId::new();
        Ok(PendingFile {
            id,
            name,
            content_type,
            storage_key: Blobs::key(tenant, id, Utc::now()),
        })
    }

    /// Completes the content and describes the artifact.
    async fn finish(self, writer: BlobWriter) -> Result<NewArtifact> {
        let done = writer.finish().await?;
        Ok(NewArtifact {
            id: self.id,
            name: self.name,
            content_type: self.content_type,
            sha256: done.sha256,
            size: done.size,
            storage_key: self.storage_key,
        })
    }
}
