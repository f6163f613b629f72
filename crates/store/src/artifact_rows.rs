//! The artifact row both adapters decode (each database's id and instant types, see
//! [`Dialect`]), and the rules they share.

use switchyard_types::{
    Artifact, ArtifactId, ArtifactState, Error, Job, JobId, NewArtifact, Result, TenantId,
};

use crate::deployment_rows::Dialect;
use crate::identity_rows::{corrupt, tenant_id};

/// The columns of [`ArtifactRow`].
pub(crate) const ARTIFACT_COLUMNS: &str = "id, tenant_id, job_id, name, content_type, sha256, \
    size, storage_key, state, created_at, expires_at, expired_at";

/// An `artifacts` row, without the sweeper's lease.
#[derive(sqlx::FromRow)]
pub(crate) struct ArtifactRow<I, T> {
    id: I,
    tenant_id: String,
    job_id: I,
    name: String,
    content_type: String,
    sha256: String,
    size: i64,
    storage_key: String,
    state: i16,
    created_at: T,
    expires_at: T,
    expired_at: Option<T>,
}

impl<I, T> ArtifactRow<I, T> {
    /// The artifact.
    pub(crate) fn decode<D: Dialect<Id = I, At = T>>(self) -> Result<Artifact> {
        Ok(Artifact {
            id: ArtifactId(D::id(self.id)?),
            tenant: tenant_id(&self.tenant_id)?,
            job: JobId(D::id(self.job_id)?),
            name: self.name,
            content_type: self.content_type,
            sha256: self.sha256,
            size: u64::try_from(self.size).map_err(|_| corrupt("artifact size"))?,
            storage_key: self.storage_key,
            state: ArtifactState::from_i16(self.state).ok_or_else(|| corrupt("artifact state"))?,
            created_at: D::at(self.created_at)?,
            expires_at: D::at(self.expires_at)?,
            expired_at: self.expired_at.map(D::at).transpose()?,
        })
    }
}

/// An artifact's size as stored (`bigint`).
pub(crate) fn db_size(a: &NewArtifact) -> Result<i64> {
    i64::try_from(a.size).map_err(|_| Error::invalid("size", "is too large"))
}

/// The upload's job, of the one that was enqueued.
pub(crate) fn the_job(enqueued: Vec<Job>) -> Result<Job> {
    enqueued
        .into_iter()
        .next()
        .ok_or_else(|| Error::internal("the upload's job was not enqueued"))
}

/// An unknown tenant.
pub(crate) fn no_tenant(tenant: &TenantId) -> Error {
    Error::not_found(format!("tenant {tenant}"))
}

/// An artifact that is not the tenant's (or does not exist).
pub(crate) fn no_artifact(id: ArtifactId) -> Error {
    Error::not_found(format!("artifact {id}"))
}
