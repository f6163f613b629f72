//! Uploads, their status and their artifacts as the API shows them (DESIGN §3.7), with the
//! query of the artifact list. The upload itself is `multipart/form-data`, read as a stream by
//! the handler, so it has no body type here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::{ListArtifacts, Retention, Uploaded};
use switchyard_types::{Artifact, ArtifactState, IngestState, IngestStatus, JobState};
use utoipa::{IntoParams, ToSchema};

use super::JobStateSchema;

enum_schema!(
    /// The OpenAPI schema of [`ArtifactState`].
    ArtifactStateSchema for ArtifactState,
    "ArtifactState",
    "STORED until its retention ends, then EXPIRED (its content deleted)."
);

enum_schema!(
    /// The OpenAPI schema of [`IngestState`].
    IngestStateSchema for IngestState,
    "IngestState",
    "QUEUED -> PROCESSING -> COMPLETED | FAILED, following the upload's job."
);

/// The body of `PUT /ingest/retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// Keep the tenant's artifacts this many seconds after their upload (1 to 315360000);
    /// `null`: back to the installation's default.
    pub retention_seconds: Option<u64>,
}

/// How long the tenant's artifacts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct RetentionView {
    /// Seconds from each artifact's upload to its expiry.
    pub retention_seconds: u64,
    /// `tenant` (its own policy) or `default` (the installation's).
    pub source: &'static str,
    /// On a change: how many stored artifacts were re-dated to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redated_artifacts: Option<u64>,
}

impl RetentionView {
    /// `retention`, with the count of re-dated artifacts after a change.
    pub fn new(retention: Retention, redated_artifacts: Option<u64>) -> Self {
        RetentionView {
            retention_seconds: retention.period.as_secs(),
            source: if retention.tenant_policy {
                "tenant"
            } else {
                "default"
            },
            redated_artifacts,
        }
    }
}

/// A file an upload stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ArtifactView {
    /// Its id (a UUIDv7).
    pub id: String,
    /// The upload's job.
    pub job_id: String,
    /// The file's name as uploaded.
    pub name: String,
    /// Its media type.
    pub content_type: String,
    /// The SHA-256 of its content, 64 lowercase hex digits.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether its content is still stored.
    #[schema(value_type = ArtifactStateSchema)]
    pub state: ArtifactState,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When its retention ends.
    pub expires_at: DateTime<Utc>,
    /// When its content was deleted.
    pub expired_at: Option<DateTime<Utc>>,
}

impl From<Artifact> for ArtifactView {
    fn from(a: Artifact) -> Self {
        ArtifactView {
            id: a.id.to_string(),
            job_id: a.job.to_string(),
            name: a.name,
            content_type: a.content_type,
            sha256: a.sha256,
            size: a.size,
            state: a.state,
            created_at: a.created_at,
            expires_at: a.expires_at,
            expired_at: a.expired_at,
        }
    }
}

/// What `POST /api/ingest` stored: the upload's job and its artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UploadView {
    /// The upload's job: its status is at `/api/status/{job_id}`.
    pub job_id: String,
    /// The stored files, in upload order.
    pub artifacts: Vec<ArtifactView>,
}

impl From<Uploaded> for UploadView {
    fn from(u: Uploaded) -> Self {
        UploadView {
            job_id: u.job.to_string(),
            artifacts: u.artifacts.into_iter().map(Into::into).collect(),
        }
    }
}

/// Where an upload (or any job) is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UploadStatusView {
    /// The job.
    pub job_id: String,
    /// Its status as an upload.
    #[schema(value_type = IngestStateSchema)]
    pub state: IngestState,
    /// Percent done, 0-100.
    pub progress: u8,
    /// The job's own state.
    #[schema(value_type = JobStateSchema)]
    pub job_state: JobState,
    /// The attempt that runs or ran it (0 before the first claim).
    pub attempt: u32,
    /// Why its last attempt failed, when one did.
    pub error: Option<String>,
    /// When the job last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<IngestStatus> for UploadStatusView {
    fn from(s: IngestStatus) -> Self {
        UploadStatusView {
            job_id: s.job.to_string(),
            state: s.state,
            progress: s.progress,
            job_state: s.job_state,
            attempt: s.attempt,
            error: s.error,
            updated_at: s.updated_at,
        }
    }
}

/// Query parameters of `GET /api/ingest/artifacts`; all optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListArtifactsQuery {
    /// Only this upload's artifacts (its job id).
    pub job_id: Option<String>,
    /// Page size: 1-500, default 50.
    pub limit: Option<u32>,
    /// `meta.next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl ListArtifactsQuery {
    /// The core request; `InvalidArgument` naming `job_id` when it is not a job id.
    pub fn into_request(self) -> switchyard_types::Result<ListArtifacts> {
        let job = self
            .job_id
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| {
                switchyard_types::Error::invalid("job_id", "is not a valid job id (UUID)")
            })?;
        Ok(ListArtifacts {
            job,
            limit: self.limit,
            page_token: self.page_token,
        })
    }
}
