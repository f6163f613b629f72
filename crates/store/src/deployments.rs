//! Storage of deployments (DESIGN §3.6): environments, deployments and their state changes,
//! what each environment runs (releases), the event log the watch stream and the notifier read,
//! gate evaluations, health probes and the signals services report. Every operation is scoped by
//! tenant except the driver's scans, which serve every tenant.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use switchyard_types::{
    Deployment, DeploymentEvent, DeploymentFilter, DeploymentId, Environment, Evaluation,
    GateResult, Job, NewDeployment, NewEnvironment, NewJob, ProbeResult, Result, Signal, Summary,
    TenantId, Transition, Verdict, VersionFigures,
};

/// What an environment runs now: the last production step that succeeded there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The version it runs.
    pub version: String,
    /// The deployment whose step deployed it.
    pub deployment: DeploymentId,
}

/// Storage of deployments.
#[async_trait]
pub trait DeploymentStore: Send + Sync + 'static {
    /// Creates or replaces an environment. `NotFound` when the tenant does not exist.
    async fn put_environment(&self, env: &NewEnvironment) -> Result<Environment>;

    /// The tenant's environments, by name.
    async fn environments(&self, tenant: &TenantId) -> Result<Vec<Environment>>;

    /// One environment; `NotFound` when absent.
    async fn environment(&self, tenant: &TenantId, name: &str) -> Result<Environment>;

    /// Stores a new deployment, `PENDING`, and its first event. `NotFound` when the tenant
    /// does not exist.
    ///
    /// Every event (here and in [`DeploymentStore::transition`]) is written with its
    /// notifications ([`crate::NotificationStore`]), in the same transaction: one per webhook of
    /// the tenant, or one for the outbox directory when it has none.
    async fn create_deployment(&self, new: &NewDeployment) -> Result<Deployment>;

    /// One deployment; `NotFound` when absent or another tenant's.
    async fn deployment(&self, tenant: &TenantId, id: DeploymentId) -> Result<Deployment>;

    /// The tenant's deployments matching `filter`, newest first.
    async fn list_deployments(
        &self,
        tenant: &TenantId,
        filter: &DeploymentFilter,
    ) -> Result<Vec<Deployment>>;

    /// Makes `change` in one transaction: the state moves from `change.from` to `change.to`
    /// (compare-and-set: `Conflict` when the deployment is no longer in `from`, or when another
    /// deployment of the service holds the environment `to` would hold), the step's job is
    /// enqueued, its events are appended; entering `GUARDING` starts the guard window (database
    /// clock) and records the version as the production release; leaving `ROLLING_BACK` for
    /// `ROLLED_BACK` records the rollback version as the release. Returns the deployment and the
    /// step's job.
    async fn transition(&self, change: &Transition) -> Result<(Deployment, Option<Job>)>;

    /// The production release of `service` in `environment`, if it ever had one.
    async fn current_release(
        &self,
        tenant: &TenantId,
        service: &str,
        environment: &str,
    ) -> Result<Option<Release>>;

    /// Deployments of any tenant whose step's job has ended (completed, dead-lettered or
    /// cancelled), with that job: the driver moves them on.
    async fn finished_steps(&self, limit: u32) -> Result<Vec<(Deployment, Job)>>;

    /// Guarded deployments of any tenant whose probe or evaluation is due (database clock).
    async fn due_guards(&self, limit: u32) -> Result<Vec<Deployment>>;

    /// Takes the deployment's due health probe: the next one becomes due `interval` from now
    /// and `probe` (none when the environment has no health URL) is enqueued, in one
    /// transaction. `None` when the probe was not due (another replica took it) or the
    /// deployment is no longer guarded.
    async fn take_probe(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
        interval: Duration,
        probe: Option<NewJob>,
    ) -> Result<Option<Job>>;

    /// Takes the deployment's due evaluation: the next one becomes due `interval` from now.
    /// `false` when it was not due (another replica took it) or the deployment is no longer
    /// guarded: exactly one replica evaluates each interval.
    async fn take_evaluation(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
        interval: Duration,
    ) -> Result<bool>;

    /// Stores an evaluation with the inputs it read.
    async fn record_evaluation(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
        verdict: Verdict,
        gates: &[GateResult],
        inputs: &serde_json::Value,
    ) -> Result<Evaluation>;

    /// The deployment's evaluations, oldest first.
    async fn evaluations(&self, tenant: &TenantId, id: DeploymentId) -> Result<Vec<Evaluation>>;

    /// The figures of one version of a service over the `lookback` before `until` (database
    /// clock now, when `None`): its tagged jobs that finished and the signals it reported.
    async fn version_figures(
        &self,
        tenant: &TenantId,
        service: &str,
        version: &str,
        lookback: Duration,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<VersionFigures>;

    /// When the version's last tagged job finished, if any did: the end of its last window.
    async fn last_finished(
        &self,
        tenant: &TenantId,
        service: &str,
        version: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>>;

    /// The results of the deployment's health probes issued since `since`, oldest first; a
    /// probe still running has none yet and is left out.
    async fn probes(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<ProbeResult>>;

    /// Stores a sample a service reported about itself.
    async fn report_signal(&self, signal: &Signal) -> Result<()>;

    /// Events after `after`, oldest first: of one deployment, or of every deployment of the
    /// tenant.
    async fn events(
        &self,
        tenant: &TenantId,
        deployment: Option<DeploymentId>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeploymentEvent>>;

    /// The tenant's jobs and deployments counted by state.
    async fn summary(&self, tenant: &TenantId) -> Result<Summary>;

    /// Every tenant's deployments counted by state name (states with none are absent): the
    /// `switchyard_deployments` gauge.
    async fn deployments_by_state(&self) -> Result<BTreeMap<String, u64>>;
}
