//! Deployments (DESIGN §3.6): a service version goes to a staging environment, then to
//! production, where a guard watches it for a window and rolls it back by itself on a failed
//! gate. Each step is a job run by an agent of the environment's pool.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, JobId, TenantId};

uuid_id!(
    /// A deployment's identity: a UUIDv7.
    DeploymentId,
    "deployment"
);

upper_enum!(
    /// Where a deployment is in its life:
    ///
    /// ```text
    /// PENDING --stage--> STAGING --job ok--> STAGED --promote--> PROMOTING --job ok--> GUARDING
    ///                       |job failed                             |job failed         |window passed
    ///                       v                                       v                   v
    ///                    FAILED                               ROLLING_BACK          SUCCEEDED
    /// GUARDING --gate FAIL or rollback--> ROLLING_BACK --job ok--> ROLLED_BACK
    /// SUCCEEDED (the service's current one) --rollback--> ROLLING_BACK
    /// ROLLING_BACK --job failed--> FAILED
    /// ```
    DeploymentState, "state" {
        /// Created; nothing deployed yet.
        Pending = "PENDING" => 0,
        /// The staging step's job runs.
        Staging = "STAGING" => 1,
        /// Deployed to staging; waiting to be promoted.
        Staged = "STAGED" => 2,
        /// The production step's job runs.
        Promoting = "PROMOTING" => 3,
        /// In production, watched by the guard until its window has passed.
        Guarding = "GUARDING" => 4,
        /// In production, and its guard passed. Terminal (a later rollback excepted).
        Succeeded = "SUCCEEDED" => 5,
        /// The rollback step's job deploys the previous version.
        RollingBack = "ROLLING_BACK" => 6,
        /// Rolled back to the previous (or a named) version. Terminal.
        RolledBack = "ROLLED_BACK" => 7,
        /// A step failed with nothing to roll back to, or the rollback itself failed. Terminal.
        Failed = "FAILED" => 8,
    }
);

impl DeploymentState {
    /// Whether no ordinary transition leaves this state.
    pub fn is_terminal(self) -> bool {
        match self {
            DeploymentState::Succeeded | DeploymentState::RolledBack | DeploymentState::Failed => {
                true
            }
            DeploymentState::Pending
            | DeploymentState::Staging
            | DeploymentState::Staged
            | DeploymentState::Promoting
            | DeploymentState::Guarding
            | DeploymentState::RollingBack => false,
        }
    }

    /// Whether a step's job runs in this state (its outcome moves the deployment on).
    pub fn runs_step(self) -> bool {
        matches!(
            self,
            DeploymentState::Staging | DeploymentState::Promoting | DeploymentState::RollingBack
        )
    }

    /// The environment this state holds for the service, if any: staging while it deploys
    /// there, production from promotion until the guard or the rollback ends. At most one
    /// deployment of a service holds an environment at once (promotes and rollbacks of one
    /// service are serialised by this).
    pub fn holds(self) -> Option<Stage> {
        match self {
            DeploymentState::Staging => Some(Stage::Staging),
            DeploymentState::Promoting
            | DeploymentState::Guarding
            | DeploymentState::RollingBack => Some(Stage::Production),
            DeploymentState::Pending
            | DeploymentState::Staged
            | DeploymentState::Succeeded
            | DeploymentState::RolledBack
            | DeploymentState::Failed => None,
        }
    }
}

/// Which of a deployment's two environments a step deploys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The deployment's staging environment.
    Staging,
    /// Its target (production) environment.
    Production,
}

upper_enum!(
    /// What a step does.
    StepKind, "step" {
        /// Deploys the version to staging.
        Stage = "STAGE" => 0,
        /// Deploys the version to production.
        Promote = "PROMOTE" => 1,
        /// Deploys the previous (or a named) version to production.
        Rollback = "ROLLBACK" => 2,
    }
);

/// Where a service is deployed: the agent pool that deploys to it and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The owning tenant.
    pub tenant: TenantId,
    /// Its name (`staging`, `production`, ...), unique in the tenant.
    pub name: String,
    /// The agent pool whose agents deploy to it (and probe its health).
    pub pool: String,
    /// The shell command a deploy runs, with `{{service}}`, `{{version}}` and
    /// `{{environment}}` substituted (also set as `SWITCHYARD_SERVICE`, `SWITCHYARD_VERSION`
    /// and `SWITCHYARD_ENVIRONMENT`).
    pub deploy_command: String,
    /// Probed (`GET`, expecting 200) from an agent of the pool while a deployment is guarded.
    pub health_url: Option<String>,
    /// Secrets the deploy command needs, by name, resolved by the agent.
    pub secrets: Vec<String>,
    /// When it was created (database clock).
    pub created_at: DateTime<Utc>,
    /// When it last changed (database clock).
    pub updated_at: DateTime<Utc>,
}

/// An environment to create or replace (already validated by `core`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnvironment {
    /// The owning tenant.
    pub tenant: TenantId,
    /// See [`Environment::name`].
    pub name: String,
    /// See [`Environment::pool`].
    pub pool: String,
    /// See [`Environment::deploy_command`].
    pub deploy_command: String,
    /// See [`Environment::health_url`].
    pub health_url: Option<String>,
    /// See [`Environment::secrets`].
    pub secrets: Vec<String>,
}

/// How a deployment is guarded after its production step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GuardSettings {
    /// How long the guard watches (default 60 min).
    pub window: Duration,
    /// Time between two evaluations (default 30 s).
    pub interval: Duration,
    /// The rolling window the job and signal gates look at (default 5 min).
    pub lookback: Duration,
    /// Time between two health probes (default 10 s).
    pub probe_interval: Duration,
    /// How long the health probe may fail before its gate fails (default 30 s).
    pub health_grace: Duration,
    /// Samples a gate needs before it may pass or fail (default 10); fewer is `INCONCLUSIVE`.
    pub min_samples: u32,
    /// The failed share of jobs (or of reported requests) above which a gate fails (0.05).
    pub max_failure_rate: f64,
    /// The median run time (or reported latency), as a multiple of the previous version's,
    /// above which a gate fails (1.10).
    pub max_latency_ratio: f64,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            window: Duration::from_secs(60 * 60),
            interval: Duration::from_secs(30),
            lookback: Duration::from_secs(5 * 60),
            probe_interval: Duration::from_secs(10),
            health_grace: Duration::from_secs(30),
            min_samples: 10,
            max_failure_rate: 0.05,
            max_latency_ratio: 1.10,
        }
    }
}

/// A deployment of one version of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// Identity.
    pub id: DeploymentId,
    /// The owning tenant.
    pub tenant: TenantId,
    /// The service deployed.
    pub service: String,
    /// The version deployed.
    pub version: String,
    /// The staging environment.
    pub staging_environment: String,
    /// The target (production) environment.
    pub environment: String,
    /// Where it is.
    pub state: DeploymentState,
    /// How it is guarded.
    pub guard: GuardSettings,
    /// The job of the step that runs now, or ran last.
    pub step_job: Option<JobId>,
    /// What that step does.
    pub step: Option<StepKind>,
    /// The version production ran before this one was promoted (what a rollback restores).
    pub previous_version: Option<String>,
    /// The version a rollback deploys.
    pub rollback_version: Option<String>,
    /// Why it was rolled back or failed.
    pub reason: Option<String>,
    /// When its guard began (the production step succeeded).
    pub guard_started_at: Option<DateTime<Utc>>,
    /// When its guard window ends.
    pub guard_ends_at: Option<DateTime<Utc>>,
    /// Who created it.
    pub created_by: String,
    /// Creation instant (database clock).
    pub created_at: DateTime<Utc>,
    /// Last change (database clock).
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A deployment to create (already validated by `core`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    /// The owning tenant.
    pub tenant: TenantId,
    /// The service.
    pub service: String,
    /// The version.
    pub version: String,
    /// The staging environment.
    pub staging_environment: String,
    /// The target environment.
    pub environment: String,
    /// Guard settings.
    pub guard: GuardSettings,
    /// Who creates it.
    pub created_by: String,
}

/// Filters for listing deployments; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentFilter {
    /// Only this service's.
    pub service: Option<String>,
    /// Only those in this state.
    pub state: Option<DeploymentState>,
    /// Only those targeting this environment (staging or production).
    pub environment: Option<String>,
    /// Page size (1..=500).
    pub limit: u32,
    /// Continue after this one (newest first).
    pub after: Option<DeploymentId>,
}

/// Something that happened to a deployment, kept in order (and sent to webhooks).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentEvent {
    /// Position in the installation's event log; grows.
    pub seq: i64,
    /// The deployment.
    pub deployment: DeploymentId,
    /// The owning tenant.
    pub tenant: TenantId,
    /// `state_changed` or `gate_failed`.
    pub kind: String,
    /// The deployment's state after the event.
    pub state: DeploymentState,
    /// The state before (for `state_changed`).
    pub from: Option<DeploymentState>,
    /// What happened, for humans.
    pub message: String,
    /// When (database clock).
    pub at: DateTime<Utc>,
}

/// A state change the store makes atomically: it matches only while the deployment is still
/// in `from` (compare-and-set, so concurrent callers and replicas cannot both make it).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The owning tenant.
    pub tenant: TenantId,
    /// The deployment.
    pub id: DeploymentId,
    /// The state it must be in.
    pub from: DeploymentState,
    /// The state it moves to.
    pub to: DeploymentState,
    /// A step to start: its job is enqueued in the same transaction.
    pub step: Option<(StepKind, crate::NewJob)>,
    /// Sets [`Deployment::previous_version`].
    pub previous_version: Option<String>,
    /// Sets [`Deployment::rollback_version`].
    pub rollback_version: Option<String>,
    /// Sets [`Deployment::reason`].
    pub reason: Option<String>,
    /// What the event says.
    pub message: String,
    /// Also record a `gate_failed` event with this message, before the state change.
    pub gate_failure: Option<String>,
}

upper_enum!(
    /// The outcome of one gate, or of one evaluation.
    Verdict, "verdict" {
        /// Too little data to judge: hold (never a pass).
        Inconclusive = "INCONCLUSIVE" => 0,
        /// Within its limit.
        Pass = "PASS" => 1,
        /// Beyond its limit: roll back.
        Fail = "FAIL" => 2,
        /// Not applicable (no source of data configured, no baseline).
        Skipped = "SKIPPED" => 3,
    }
);

/// One gate's part of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// `failure_rate`, `latency`, `health` or `signals`.
    pub gate: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// What was measured (failed share, latency ratio, seconds failing), when anything was.
    pub value: Option<f64>,
    /// The limit it was held to.
    pub limit: Option<f64>,
    /// Samples it saw.
    pub samples: u64,
    /// Why, for humans: names the gate and the measured value.
    pub detail: String,
}

/// One evaluation of a guarded deployment's gates, kept with its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Position among the deployment's evaluations.
    pub seq: i64,
    /// The deployment.
    pub deployment: DeploymentId,
    /// The overall verdict: `FAIL` if a gate failed, else `INCONCLUSIVE` if one was, else
    /// `PASS`.
    pub verdict: Verdict,
    /// Every gate.
    pub gates: Vec<GateResult>,
    /// When (database clock).
    pub at: DateTime<Utc>,
}

/// A sample of the service's own health, reported while it is guarded (`ReportSignal`).
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The owning tenant.
    pub tenant: TenantId,
    /// The service.
    pub service: String,
    /// Its version.
    pub version: String,
    /// Requests served in the sample.
    pub requests: u64,
    /// Of those, failed.
    pub errors: u64,
    /// Their median latency, in milliseconds, when measured.
    pub latency_ms: Option<f64>,
}

/// The raw figures one evaluation reads, for one version of one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionFigures {
    /// Jobs tagged with the version that finished in the lookback window.
    pub jobs_finished: u64,
    /// Of those, failed (dead-lettered).
    pub jobs_failed: u64,
    /// Run times, in seconds, of those that completed.
    pub run_seconds: Vec<f64>,
    /// Requests the service reported in the window.
    pub signal_requests: u64,
    /// Errors it reported in the window.
    pub signal_errors: u64,
    /// Reported median latencies, one per sample, in milliseconds.
    pub signal_latencies_ms: Vec<f64>,
    /// Whether the service ever reported a signal for this version.
    pub signals_seen: bool,
}

/// A health probe's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// When the probe was issued (database clock).
    pub at: DateTime<Utc>,
    /// Whether it answered 200.
    pub ok: bool,
}

/// The deployment counts and job counts of a tenant, by state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Jobs by state name.
    pub jobs: std::collections::BTreeMap<String, u64>,
    /// Deployments by state name.
    pub deployments: std::collections::BTreeMap<String, u64>,
}

/// Whether `s` may be a service name: 1–64 characters of `[a-z0-9._-]`, starting with a
/// letter or digit.
pub fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Whether `s` may be a version: 1–128 characters of `[A-Za-z0-9._+-]`, starting with a letter
/// or digit. Versions are substituted into shell commands, so nothing else is allowed.
pub fn is_version(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_hold_environments_only_while_they_deploy_or_guard() {
        let holding: Vec<_> = DeploymentState::ALL
            .iter()
            .filter(|s| s.holds().is_some())
            .collect();
        assert_eq!(
            holding,
            [
                &DeploymentState::Staging,
                &DeploymentState::Promoting,
                &DeploymentState::Guarding,
                &DeploymentState::RollingBack
            ]
        );
        for s in DeploymentState::ALL {
            assert!(!(s.is_terminal() && s.holds().is_some()), "{s}");
            assert_eq!(DeploymentState::from_i16(s.as_i16()), Some(*s));
        }
    }

    #[test]
    fn versions_and_services_cannot_carry_shell() {
        assert!(is_version("1.2.3-rc.1+build.7"));
        assert!(is_service_name("checkout-api"));
        for bad in ["", "1.0; rm -rf /", "$(id)", "-1", "a b", "1.0\n"] {
            assert!(!is_version(bad), "{bad:?}");
        }
        for bad in ["", "Checkout", "a/b", ".hidden", &"a".repeat(65)] {
            assert!(!is_service_name(bad), "{bad:?}");
        }
    }
}
