//! Storage for Switchyard. [`QueueStore`] is the one trait the domain (`switchyard-core`) sees
//! for jobs, and [`IdentityStore`] the one the auth layer sees for tenants, users, roles,
//! refresh tokens and API keys; [`postgres::PgStore`] (production) and [`sqlite::SqliteStore`]
//! (the embedded default) implement both, and [`conformance`] and [`identity_conformance`] hold
//! the suites both must pass. Driver errors stop here: they are translated into
//! [`switchyard_types::Error`] so `sqlx::Error` never reaches the domain.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchyard_types::{
    ClaimRequest, Error, Job, JobFilter, JobId, LogAppend, LogChunk, NewJob, Outcome, Priority,
    QueueStats, Result, TenantId,
};

pub mod agents;
pub mod agents_conformance;
mod artifact_rows;
mod artifacts;
pub mod artifacts_conformance;
mod batch;
mod claim_batch;
pub mod conformance;
mod deployment_rows;
pub mod deployments;
pub mod deployments_conformance;
mod error;
pub mod identity;
pub mod identity_conformance;
#[macro_use]
mod identity_rows;
mod job_logs;
mod job_progress;
mod notification_rows;
mod notifications;
#[macro_use]
mod limits;
pub mod postgres;
mod postgres_agents;
mod postgres_artifacts;
mod postgres_claim;
mod postgres_deployments;
mod postgres_identity;
mod postgres_notifications;
mod rows;
pub mod sqlite;
mod sqlite_agents;
mod sqlite_artifacts;
mod sqlite_claim;
mod sqlite_deployments;
mod sqlite_identity;
mod sqlite_notifications;
mod success_batch;

pub use agents::{AgentStore, Beat, StreamBeat};
pub use artifacts::ArtifactStore;
pub use deployments::{DeploymentStore, Release};
pub use identity::IdentityStore;
pub use notifications::NotificationStore;

/// How far the embedded migrations are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Migrations embedded in this binary.
    pub known: usize,
    /// Of those, applied to the database.
    pub applied: usize,
}

impl MigrationStatus {
    /// Whether every embedded migration is applied.
    pub fn is_current(&self) -> bool {
        self.applied >= self.known
    }
}

/// The job store. Every operation on one job is scoped by tenant: another tenant's job is
/// `NotFound`. Every agent write carries the attempt (the fencing token) and is a conditional
/// update on it: a stale attempt gets `Conflict` and changes nothing. All lease instants come
/// from the database clock.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Inserts jobs in one transaction. A job whose idempotency key exists already for its
    /// tenant is not inserted; the existing job is returned in its place. Output order follows
    /// input order.
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Job>>;

    /// Claims up to `max_jobs` due jobs of `pool` whose labels the agent carries, in priority
    /// order, round-robin across tenants within a priority, FIFO within a tenant; `tenant`
    /// restricts the claim to one tenant's jobs. Each claimed job is `CLAIMED` with `attempt`
    /// bumped and `lease_expires_at = now() + lease`. An empty vector when nothing is due.
    async fn claim(&self, tenant: Option<&TenantId>, req: &ClaimRequest) -> Result<Vec<Job>>;

    /// `CLAIMED -> RUNNING` for the current attempt; renews the lease.
    async fn start(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        lease: Duration,
    ) -> Result<Job>;

    /// Of the `held` attempts (job, attempt), those that are still their job's current attempt
    /// and claimed or running: a read, for holders to learn which they lost (cancelled,
    /// requeued) when no event told them. Only the tenant's jobs count.
    async fn current_attempts(
        &self,
        tenant: &TenantId,
        held: &[(JobId, u32)],
    ) -> Result<Vec<JobId>>;

    /// Renews the lease of a claimed or running job's current attempt to `now() + lease`.
    async fn extend_lease(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        lease: Duration,
    ) -> Result<Job>;

    /// Ends the current attempt. Success: `COMPLETED`. Failure: back to `QUEUED`, due after
    /// `retry_delay`, while `attempt < attempt_limit`; else `DEAD_LETTERED`. Either way the
    /// failure is appended to the job's failures.
    async fn complete(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        outcome: &Outcome,
        retry_delay: Duration,
    ) -> Result<Job>;

    /// Any non-terminal state -> `CANCELLED`. Conflict when terminal.
    async fn cancel(&self, tenant: &TenantId, id: JobId) -> Result<Job>;

    /// Changes the priority of a non-terminal job.
    async fn set_priority(&self, tenant: &TenantId, id: JobId, priority: Priority) -> Result<Job>;

    /// `DEAD_LETTERED -> QUEUED` with a fresh allowance of `max_attempts`; `attempt` is kept.
    async fn redrive(&self, tenant: &TenantId, id: JobId) -> Result<Job>;

    /// One job.
    async fn get(&self, tenant: &TenantId, id: JobId) -> Result<Job>;

    /// The tenant's jobs matching `filter`, newest first, at most `filter.limit`, after
    /// `filter.after` when set.
    async fn list(&self, tenant: &TenantId, filter: &JobFilter) -> Result<Vec<Job>>;

    /// Whether the tenant has a job waiting in `pool` that is due now (labels and limits
    /// aside): a cheap look, so idle agents need not each claim to find out.
    async fn has_due_jobs(&self, tenant: &TenantId, pool: &str) -> Result<bool>;

    /// Figures per (pool, priority) for the tenant; windowed figures cover the last `window`.
    async fn stats(&self, tenant: &TenantId, window: Duration) -> Result<Vec<QueueStats>>;

    /// Requeues (due after `retry_delay`) or dead-letters up to `limit` jobs, of any tenant,
    /// whose lease expired in `CLAIMED` or `RUNNING`; an expiry counts as a failed attempt.
    /// Safe when several replicas run it at once: each expiry is handled exactly once. Returns
    /// the jobs it handled, as they are now (`QUEUED` or `DEAD_LETTERED`).
    async fn reap_expired(&self, limit: u32, retry_delay: Duration) -> Result<Vec<Job>>;

    /// Restart grace: every lease, of any tenant, that has already expired in `CLAIMED` or
    /// `RUNNING` is renewed to `now() + grace`, so agents that kept running while the control
    /// plane was down can reconnect and renew before the reaper takes their jobs. Returns how
    /// many leases were renewed.
    async fn grant_restart_grace(&self, grace: Duration) -> Result<u64>;

    /// Caps how many of the tenant's jobs may be claimed or running at once (`None`: no cap).
    /// The claim enforces it atomically, across replicas.
    async fn set_tenant_limit(&self, tenant: &TenantId, max_running: Option<u32>) -> Result<()>;

    /// The tenant's cap on claimed or running jobs, if any.
    async fn tenant_limit(&self, tenant: &TenantId) -> Result<Option<u32>>;

    /// Stores chunk `seq` of attempt `attempt` of job `id` (the caller checked the attempt is
    /// current and its holder's). A chunk already stored is a `Duplicate`, unchanged; one that
    /// would take the job's log past [`switchyard_types::MAX_LOG_BYTES_PER_JOB`] is dropped
    /// (`Full`).
    async fn append_log(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        seq: u64,
        data: &str,
    ) -> Result<LogAppend>;

    /// Up to `limit` chunks of job `id`, of `attempt` only when given, after sequence number
    /// `after` (of the same attempt) when given, in attempt and sequence order. The job's
    /// existence is the caller's check.
    async fn logs(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: Option<u32>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LogChunk>>;

    /// Records that attempt `attempt` of job `id` is `percent` (0-100) done, replacing the
    /// job's earlier progress. Written only while that attempt is current and `RUNNING`, in
    /// the job's own narrow row (the wide job row is not rewritten): otherwise `Conflict`
    /// (stale attempt, not running) or `NotFound`, and nothing changes.
    async fn report_progress(
        &self,
        tenant: &TenantId,
        id: JobId,
        attempt: u32,
        percent: u8,
    ) -> Result<()>;

    /// A cheap round trip to the database.
    async fn ping(&self) -> Result<()>;

    /// How far the embedded migrations are applied.
    async fn migrations(&self) -> Result<MigrationStatus>;

    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
}

/// The stores of one database: both handles share one adapter instance (one connection pool),
/// so opening the database once serves the queue and identities alike.
#[derive(Clone)]
pub struct Stores {
    /// Jobs.
    pub queue: Arc<dyn QueueStore>,
    /// Tenants, users, roles, refresh tokens and API keys.
    pub identity: Arc<dyn IdentityStore>,
    /// The agent registry.
    pub agents: Arc<dyn AgentStore>,
    /// Environments, deployments and their guards.
    pub deployments: Arc<dyn DeploymentStore>,
    /// Webhooks and the notifications of deployments' events.
    pub notifications: Arc<dyn NotificationStore>,
    /// The records of uploaded artifacts.
    pub artifacts: Arc<dyn ArtifactStore>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("backend", &self.queue.backend())
            .finish_non_exhaustive()
    }
}

/// Opens the stores of the database named by `url` (`postgres://…` or `sqlite:…`), applying
/// migrations when `migrate` is set.
pub async fn open(url: &str, migrate: bool) -> Result<Stores> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = Arc::new(postgres::PgStore::connect(url, migrate).await?);
        Ok(Stores {
            queue: store.clone(),
            identity: store.clone(),
            agents: store.clone(),
            deployments: store.clone(),
            notifications: store.clone(),
            artifacts: store,
        })
    } else if url.starts_with("sqlite:") {
        let store = Arc::new(sqlite::SqliteStore::connect(url, migrate).await?);
        Ok(Stores {
            queue: store.clone(),
            identity: store.clone(),
            agents: store.clone(),
            deployments: store.clone(),
            notifications: store.clone(),
            artifacts: store,
        })
    } else {
        Err(Error::invalid(
            "database_url",
            "must start with postgres:// or sqlite:",
        ))
    }
}
