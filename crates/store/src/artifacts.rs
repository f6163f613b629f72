//! Storage of artifacts' records (DESIGN §3.7): what each upload stored, under which key, until
//! when. The content itself is in the artifact store (`switchyard-blobs`); these rows are how it
//! is found, listed, and expired. Every operation is scoped by tenant except the sweeper's
//! claim and the stored-bytes total, which serve every tenant.

use std::time::Duration;

use async_trait::async_trait;
use switchyard_types::{
    Artifact, ArtifactFilter, ArtifactId, Job, JobId, NewArtifact, NewJob, Result, TenantId,
};

/// Artifacts' records; implemented by both databases.
#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Records an upload in one transaction: enqueues its `job` (as the queue's enqueue does)
    /// and stores its `artifacts` (`STORED`, of that job, retained from now, database clock,
    /// for the tenant's policy or, without one, `default_retention`). Either both are stored or
    /// neither. `NotFound` when the tenant does not exist; `AlreadyExists` when an artifact id or
    /// storage key is taken.
    async fn create_upload(
        &self,
        job: &NewJob,
        artifacts: &[NewArtifact],
        default_retention: Duration,
    ) -> Result<(Job, Vec<Artifact>)>;

    /// The tenant's retention policy; `None` when it has none (the default applies).
    async fn retention(&self, tenant: &TenantId) -> Result<Option<Duration>>;

    /// Sets (`Some`, at least 1 ms) or clears (`None`) the tenant's retention policy and, in the
    /// same transaction, re-dates its `STORED` artifacts: each now expires at its creation plus
    /// the policy (or `default_retention`), so a shorter policy expires older artifacts at the
    /// next sweep. Returns how many artifacts were re-dated. `NotFound` when the tenant does not
    /// exist.
    async fn set_retention(
        &self,
        tenant: &TenantId,
        policy: Option<Duration>,
        default_retention: Duration,
    ) -> Result<u64>;

    /// One artifact; `NotFound` when absent or another tenant's (expired ones are found).
    async fn artifact(&self, tenant: &TenantId, id: ArtifactId) -> Result<Artifact>;

    /// The tenant's artifacts that `filter` selects, newest first.
    async fn artifacts(&self, tenant: &TenantId, filter: &ArtifactFilter) -> Result<Vec<Artifact>>;

    /// Claims up to `limit` `STORED` artifacts of any tenant whose retention has ended
    /// (database clock), oldest expiry first, for the sweeper: each is held for `lease`, so a
    /// concurrent claimer (another replica) skips it, and a claimer that dies leaves it to be
    /// claimed again once the lease ends.
    async fn due_expirations(&self, limit: u32, lease: Duration) -> Result<Vec<Artifact>>;

    /// Marks an artifact `EXPIRED` (now, database clock) once its content is deleted. Returns
    /// whether this call did it: false when it was expired already.
    async fn mark_expired(&self, id: ArtifactId) -> Result<bool>;

    /// Of `keys`, the storage keys that no artifact's record names (in any state, of any
    /// tenant): content nobody can reach, for the orphan sweep. In `keys`' order.
    async fn unrecorded_keys(&self, keys: &[String]) -> Result<Vec<String>>;

    /// Takes the turn to run the periodic `task` for the next `period` (database clock): true
    /// for one caller per period however many replicas ask, false while the current turn lasts.
    async fn take_turn(&self, task: &str, period: Duration) -> Result<bool>;

    /// The bytes of every tenant's `STORED` artifacts.
    async fn stored_bytes(&self) -> Result<u64>;

    /// The progress last reported for the tenant's job `job` (an upload's, typically), as
    /// (attempt, percent); `None` when none was reported, or the job is another tenant's.
    /// Reports are written through [`crate::QueueStore::report_progress`].
    async fn job_progress(&self, tenant: &TenantId, job: JobId) -> Result<Option<(u32, u8)>>;
}
