//! Ingest (DESIGN §3.7): artifacts uploaded with their metadata, each upload a job of kind
//! `ingest` in the tenant's ingest pool. The content lives in the artifact store under a key the
//! server generates; these are the rows that describe it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Job, JobId, JobState, TenantId};

uuid_id!(
    /// An artifact's identity: a UUIDv7.
    ArtifactId,
    "artifact"
);

upper_enum!(
    /// Where an artifact is in its life: `STORED` until its retention ends, then `EXPIRED`
    /// (its content deleted, its row kept as the record).
    ArtifactState, "state" {
        /// Its content is in the artifact store.
        Stored = "STORED" => 0,
        /// Its retention ended and its content was deleted.
        Expired = "EXPIRED" => 1,
    }
);

upper_enum!(
    /// An upload's status, from its job's state: `QUEUED` (queued or claimed), `PROCESSING`
    /// (running on an agent), `COMPLETED`, or `FAILED` (dead-lettered or cancelled).
    IngestState, "state" {
        /// Waiting for an agent.
        Queued = "QUEUED" => 0,
        /// An agent processes it.
        Processing = "PROCESSING" => 1,
        /// Processed.
        Completed = "COMPLETED" => 2,
        /// Failed for good: dead-lettered or cancelled.
        Failed = "FAILED" => 3,
    }
);

impl IngestState {
    /// The upload status a job in `state` has (a job waiting for a retry is `QUEUED` again).
    pub fn of(state: JobState) -> IngestState {
        match state {
            JobState::Queued | JobState::Claimed => IngestState::Queued,
            JobState::Running => IngestState::Processing,
            JobState::Completed => IngestState::Completed,
            JobState::DeadLettered | JobState::Cancelled => IngestState::Failed,
        }
    }
}

/// The job kind of an upload.
pub const INGEST_KIND: &str = "ingest";

/// The longest artifact name, in bytes.
pub const MAX_ARTIFACT_NAME_BYTES: usize = 255;

/// Whether `name` may name an artifact: 1–255 bytes, no `/` or `\`, no control characters, and
/// not `.` or `..`. Names are shown and offered as download file names, never used as paths.
pub fn is_artifact_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ARTIFACT_NAME_BYTES
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// An artifact about to be recorded: its content is already in the artifact store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArtifact {
    /// Its id (also part of its storage key).
    pub id: ArtifactId,
    /// The name the client gave (validated by [`is_artifact_name`]).
    pub name: String,
    /// The media type the client gave, or `application/octet-stream`.
    pub content_type: String,
    /// The SHA-256 of its content, 64 lowercase hex digits.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where its content is in the artifact store (generated, never from the client).
    pub storage_key: String,
}

/// A stored (or expired) artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Its id.
    pub id: ArtifactId,
    /// Its tenant.
    pub tenant: TenantId,
    /// The upload's job.
    pub job: JobId,
    /// The name the client gave.
    pub name: String,
    /// Its media type.
    pub content_type: String,
    /// The SHA-256 of its content, 64 lowercase hex digits.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where its content is in the artifact store.
    pub storage_key: String,
    /// Whether its content is still stored.
    pub state: ArtifactState,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When its retention ends.
    pub expires_at: DateTime<Utc>,
    /// When the sweeper deleted its content.
    pub expired_at: Option<DateTime<Utc>>,
}

/// What an artifact grant lets its holder do: fetch the artifacts of one attempt of one job of
/// a tenant. Signed into the `Assign` of an `ingest` job; worthless once that attempt ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactGrant {
    /// The job's tenant.
    pub tenant: TenantId,
    /// The upload's job.
    pub job: JobId,
    /// The attempt it was assigned for.
    pub attempt: u32,
}

/// Where an upload is: its job's state, as an upload status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    /// The upload's job.
    pub job: JobId,
    /// Its status.
    pub state: IngestState,
    /// Percent done: 0 while queued, the agent's last report for the running attempt while
    /// processing (0 before its first), 100 once completed.
    pub progress: u8,
    /// The job's own state.
    pub job_state: JobState,
    /// The attempt that runs or ran it (0 before the first claim).
    pub attempt: u32,
    /// Why its last attempt failed, when one did.
    pub error: Option<String>,
    /// When the job last changed.
    pub updated_at: DateTime<Utc>,
}

impl IngestStatus {
    /// The status of the upload whose job is `job`, whose agent last reported `reported`
    /// (attempt, percent), if it did. A report of another attempt than the job's current one
    /// does not count.
    pub fn of(job: &Job, reported: Option<(u32, u8)>) -> IngestStatus {
        let state = IngestState::of(job.state);
        let progress = match state {
            IngestState::Completed => 100,
            IngestState::Processing => reported
                .filter(|(attempt, _)| *attempt == job.attempt)
                .map_or(0, |(_, percent)| percent.min(100)),
            IngestState::Queued | IngestState::Failed => 0,
        };
        IngestStatus {
            job: job.id,
            state,
            progress,
            job_state: job.state,
            attempt: job.attempt,
            error: job.failures.last().map(|f| f.error.clone()),
            updated_at: job.updated_at,
        }
    }

    /// Whether it will change no more.
    pub fn is_final(&self) -> bool {
        matches!(self.state, IngestState::Completed | IngestState::Failed)
    }
}

/// Which artifacts a list returns: the tenant's, newest first, optionally of one upload,
/// after the page token's id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArtifactFilter {
    /// Only this upload's.
    pub job: Option<JobId>,
    /// At most this many (1–500).
    pub limit: u32,
    /// Only those older than this one (the previous page's last).
    pub before: Option<ArtifactId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_be_paths() {
        for good in ["report.pdf", "build log.txt", ".env", "a..b", "日本.txt"] {
            assert!(is_artifact_name(good), "{good}");
        }
        let long = "a".repeat(MAX_ARTIFACT_NAME_BYTES + 1);
        for bad in [
            "",
            ".",
            "..",
            "../../etc/passwd",
            "dir/file",
            "c:\\windows",
            "nul\0byte",
            "line\nbreak",
            long.as_str(),
        ] {
            assert!(!is_artifact_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_job_state_has_an_upload_status() {
        assert_eq!(IngestState::of(JobState::Claimed), IngestState::Queued);
        assert_eq!(IngestState::of(JobState::Running), IngestState::Processing);
        assert_eq!(IngestState::of(JobState::DeadLettered), IngestState::Failed);
        assert_eq!(IngestState::of(JobState::Completed), IngestState::Completed);
    }
}
