//! Ingest: artifacts and upload statuses.

use switchyard_types::{Artifact, ArtifactState, IngestState, IngestStatus};

use super::timestamp;
use crate::v1 as pb;

impl From<ArtifactState> for pb::ArtifactState {
    fn from(state: ArtifactState) -> Self {
        match state {
            ArtifactState::Stored => pb::ArtifactState::Stored,
            ArtifactState::Expired => pb::ArtifactState::Expired,
        }
    }
}

impl From<IngestState> for pb::IngestState {
    fn from(state: IngestState) -> Self {
        match state {
            IngestState::Queued => pb::IngestState::Queued,
            IngestState::Processing => pb::IngestState::Processing,
            IngestState::Completed => pb::IngestState::Completed,
            IngestState::Failed => pb::IngestState::Failed,
        }
    }
}

impl From<Artifact> for pb::Artifact {
    fn from(a: Artifact) -> Self {
        pb::Artifact {
            id: a.id.to_string(),
            job_id: a.job.to_string(),
            name: a.name,
            content_type: a.content_type,
            sha256: a.sha256,
            size: a.size,
            state: pb::ArtifactState::from(a.state).into(),
            created_at: Some(timestamp(a.created_at)),
            expires_at: Some(timestamp(a.expires_at)),
            expired_at: a.expired_at.map(timestamp),
        }
    }
}

impl From<IngestStatus> for pb::IngestStatus {
    fn from(s: IngestStatus) -> Self {
        pb::IngestStatus {
            job_id: s.job.to_string(),
            state: pb::IngestState::from(s.state).into(),
            progress: s.progress.into(),
            job_state: pb::JobState::from(s.job_state).into(),
            attempt: s.attempt,
            error: s.error.unwrap_or_default(),
            updated_at: Some(timestamp(s.updated_at)),
        }
    }
}
