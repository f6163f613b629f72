//! Deployments as the API shows them (DESIGN §3.6): environments, deployments, step plans,
//! events, guard evaluations and the dashboard summary, with the request bodies and query
//! strings of their routes. Durations are whole seconds; times RFC 3339.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::{CreateDeployment, GuardChange, ListDeployments, Plan, PutEnvironment};
use switchyard_types::{
    Deployment, DeploymentEvent, DeploymentState, Environment, Evaluation, GateResult,
    GuardSettings, StepKind, Summary, Verdict,
};
use utoipa::{IntoParams, ToSchema};

enum_schema!(
    /// The OpenAPI schema of [`DeploymentState`].
    DeploymentStateSchema for DeploymentState,
    "DeploymentState",
    "PENDING -> STAGING -> STAGED -> PROMOTING -> GUARDING -> SUCCEEDED; a failed step or gate goes to ROLLING_BACK -> ROLLED_BACK, or FAILED. Case-insensitive on input."
);

enum_schema!(
    /// The OpenAPI schema of [`StepKind`].
    StepKindSchema for StepKind,
    "StepKind",
    "What a deployment step does: STAGE (to staging), PROMOTE (to production), ROLLBACK (an earlier version to production)."
);

enum_schema!(
    /// The OpenAPI schema of [`Verdict`].
    VerdictSchema for Verdict,
    "Verdict",
    "A gate's or an evaluation's outcome: PASS, FAIL (rolls back), INCONCLUSIVE (too little data: hold, never a pass), SKIPPED (not applicable)."
);

/// `POST /api/dashboard/environments`: creates or replaces an environment.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEnvironmentBody {
    /// Its name, unique in the tenant.
    #[schema(example = "staging")]
    pub name: String,
    /// The agent pool whose agents deploy to it and probe its health.
    #[schema(example = "deploy-staging")]
    pub pool: String,
    /// The shell command a deploy runs (1-4096 characters); `{{service}}`, `{{version}}` and
    /// `{{environment}}` are substituted.
    #[schema(example = "./deploy.sh {{service}} {{version}} {{environment}}")]
    pub deploy_command: String,
    /// Probed (`GET`, expecting 200) while a deployment to it is guarded; http(s) only.
    pub health_url: Option<String>,
    /// Secrets the deploy command needs, by name (at most 32).
    #[serde(default)]
    pub secrets: Vec<String>,
}

impl From<PutEnvironmentBody> for PutEnvironment {
    fn from(b: PutEnvironmentBody) -> Self {
        PutEnvironment {
            name: b.name,
            pool: b.pool,
            deploy_command: b.deploy_command,
            health_url: b.health_url,
            secrets: b.secrets,
        }
    }
}

/// An environment: where a service is deployed, and by which pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EnvironmentView {
    /// Its name.
    pub name: String,
    /// The pool whose agents deploy to it.
    pub pool: String,
    /// The deploy command template.
    pub deploy_command: String,
    /// The health probe's URL, if any.
    pub health_url: Option<String>,
    /// Secrets the deploy command needs, by name.
    pub secrets: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Environment> for EnvironmentView {
    fn from(e: Environment) -> Self {
        EnvironmentView {
            name: e.name,
            pool: e.pool,
            deploy_command: e.deploy_command,
            health_url: e.health_url,
            secrets: e.secrets,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// Guard settings of a new deployment; each one left out takes the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardBody {
    /// How long the guard watches, in seconds (1 s to 7 days; default 3600).
    pub window_seconds: Option<u64>,
    /// Between two evaluations, in seconds (1 s up to the window; default 30).
    pub interval_seconds: Option<u64>,
    /// The gates' rolling window, in seconds (1 s to 1 day; default 300).
    pub lookback_seconds: Option<u64>,
    /// Between two health probes, in seconds (1 s to 1 hour; default 10).
    pub probe_interval_seconds: Option<u64>,
    /// How long the health probe may fail before its gate fails, in seconds (1 s to 1 day;
    /// default 30).
    pub health_grace_seconds: Option<u64>,
    /// Samples a gate needs before it may pass or fail (0 to 100000; default 10).
    pub min_samples: Option<u32>,
    /// The failed share above which a gate fails (0 to 1; default 0.05).
    pub max_failure_rate: Option<f64>,
    /// The latency ratio to the previous version above which a gate fails (1 to 100; default
    /// 1.10).
    pub max_latency_ratio: Option<f64>,
}

impl From<GuardBody> for GuardChange {
    fn from(b: GuardBody) -> Self {
        GuardChange {
            window_seconds: b.window_seconds,
            interval_seconds: b.interval_seconds,
            lookback_seconds: b.lookback_seconds,
            probe_interval_seconds: b.probe_interval_seconds,
            health_grace_seconds: b.health_grace_seconds,
            min_samples: b.min_samples,
            max_failure_rate: b.max_failure_rate,
            max_latency_ratio: b.max_latency_ratio,
        }
    }
}

/// `POST /api/dashboard/deployments`: a deployment of `service@version`, `PENDING` until staged.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploymentBody {
    /// The service (1-64 of `[a-z0-9._-]`, starting with a letter or digit).
    #[schema(example = "checkout-api")]
    pub service: String,
    /// The version (1-128 of `[A-Za-z0-9._+-]`, starting with a letter or digit).
    #[schema(example = "1.4.2")]
    pub version: String,
    /// The target environment (default `production`); it must exist.
    pub environment: Option<String>,
    /// The staging environment (default `staging`); it must exist and differ from the target.
    pub staging_environment: Option<String>,
    /// Guard settings; each one left out takes the default.
    #[serde(default)]
    pub guard: GuardBody,
}

impl From<CreateDeploymentBody> for CreateDeployment {
    fn from(b: CreateDeploymentBody) -> Self {
        CreateDeployment {
            service: b.service,
            version: b.version,
            environment: b.environment,
            staging_environment: b.staging_environment,
            guard: b.guard.into(),
        }
    }
}

/// How a deployment is guarded after its production step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct GuardView {
    /// How long the guard watches, in seconds.
    pub window_seconds: u64,
    /// Between two evaluations, in seconds.
    pub interval_seconds: u64,
    /// The gates' rolling window, in seconds.
    pub lookback_seconds: u64,
    /// Between two health probes, in seconds.
    pub probe_interval_seconds: u64,
    /// How long the health probe may fail before its gate fails, in seconds.
    pub health_grace_seconds: u64,
    /// Samples a gate needs before it may pass or fail.
    pub min_samples: u32,
    /// The failed share above which a gate fails.
    pub max_failure_rate: f64,
    /// The latency ratio to the previous version above which a gate fails.
    pub max_latency_ratio: f64,
}

impl From<GuardSettings> for GuardView {
    fn from(g: GuardSettings) -> Self {
        GuardView {
            window_seconds: g.window.as_secs(),
            interval_seconds: g.interval.as_secs(),
            lookback_seconds: g.lookback.as_secs(),
            probe_interval_seconds: g.probe_interval.as_secs(),
            health_grace_seconds: g.health_grace.as_secs(),
            min_samples: g.min_samples,
            max_failure_rate: g.max_failure_rate,
            max_latency_ratio: g.max_latency_ratio,
        }
    }
}

/// A deployment of one version of one service.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeploymentView {
    /// Its id (a UUIDv7).
    pub id: String,
    /// The service deployed.
    pub service: String,
    /// The version deployed.
    pub version: String,
    /// Where it is.
    #[schema(value_type = DeploymentStateSchema)]
    pub state: DeploymentState,
    /// The target (production) environment.
    pub environment: String,
    /// The staging environment.
    pub staging_environment: String,
    /// How it is guarded.
    pub guard: GuardView,
    /// What the step that runs now (or ran last) does.
    #[schema(value_type = Option<StepKindSchema>)]
    pub step: Option<StepKind>,
    /// That step's job (see `/api/queue/jobs/{id}`).
    pub step_job_id: Option<String>,
    /// The version production ran before this one was promoted (what a rollback restores).
    pub previous_version: Option<String>,
    /// The version a rollback deploys.
    pub rollback_version: Option<String>,
    /// Why it was rolled back or failed.
    pub reason: Option<String>,
    /// When its guard began.
    pub guard_started_at: Option<DateTime<Utc>>,
    /// When its guard window ends.
    pub guard_ends_at: Option<DateTime<Utc>>,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Deployment> for DeploymentView {
    fn from(d: Deployment) -> Self {
        DeploymentView {
            id: d.id.to_string(),
            service: d.service,
            version: d.version,
            state: d.state,
            environment: d.environment,
            staging_environment: d.staging_environment,
            guard: d.guard.into(),
            step: d.step,
            step_job_id: d.step_job.map(|id| id.to_string()),
            previous_version: d.previous_version,
            rollback_version: d.rollback_version,
            reason: d.reason,
            guard_started_at: d.guard_started_at,
            guard_ends_at: d.guard_ends_at,
            created_by: d.created_by,
            created_at: d.created_at,
            updated_at: d.updated_at,
            finished_at: d.finished_at,
        }
    }
}

impl DeploymentView {
    /// Views of `deployments`, in order.
    pub fn all(deployments: Vec<Deployment>) -> Vec<DeploymentView> {
        deployments.into_iter().map(DeploymentView::from).collect()
    }
}

/// Query parameters of `GET /api/dashboard/deployments`; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeploymentsQuery {
    /// Only this service's deployments.
    pub service: Option<String>,
    /// Only deployments in this state (case-insensitive).
    #[param(value_type = Option<DeploymentStateSchema>)]
    pub state: Option<DeploymentState>,
    /// Only deployments targeting this environment.
    pub environment: Option<String>,
    /// Page size: 1-500, default 50.
    pub limit: Option<u32>,
    /// `meta.next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl From<ListDeploymentsQuery> for ListDeployments {
    fn from(q: ListDeploymentsQuery) -> Self {
        ListDeployments {
            service: q.service,
            state: q.state,
            environment: q.environment,
            limit: q.limit,
            page_token: q.page_token,
        }
    }
}

/// Query parameters of `GET /api/dashboard/deployments/service/{name}` (the service is in the
/// path); all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServiceDeploymentsQuery {
    /// Only deployments in this state (case-insensitive).
    #[param(value_type = Option<DeploymentStateSchema>)]
    pub state: Option<DeploymentState>,
    /// Only deployments targeting this environment.
    pub environment: Option<String>,
    /// Page size: 1-500, default 50.
    pub limit: Option<u32>,
    /// `meta.next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl ServiceDeploymentsQuery {
    /// The list request for `Deployments::list`, of `service`'s deployments.
    pub fn into_list(self, service: String) -> ListDeployments {
        ListDeployments {
            service: Some(service),
            state: self.state,
            environment: self.environment,
            limit: self.limit,
            page_token: self.page_token,
        }
    }
}

/// `POST /api/dashboard/deployments/{id}/production`; the body may be left out (a dry run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// Carry the promotion out; `false` (the default) only says what it would do.
    #[serde(default)]
    pub execute: bool,
}

/// `POST /api/dashboard/deployments/{id}/rollback`; the body may be left out (a dry run to the
/// previous version).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to roll back to (default: the one production ran before this deployment).
    pub version: Option<String>,
    /// Carry the rollback out; `false` (the default) only says what it would do.
    #[serde(default)]
    pub execute: bool,
}

/// What a step does or would do: the answer of a stage, promote or rollback, dry run or not.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PlanView {
    /// The step.
    #[schema(value_type = StepKindSchema)]
    pub step: StepKind,
    /// Whether it was carried out (`false`: a dry run, nothing changed).
    pub executed: bool,
    /// The deployment's state before.
    #[schema(value_type = DeploymentStateSchema)]
    pub from: DeploymentState,
    /// Its state once the step starts.
    #[schema(value_type = DeploymentStateSchema)]
    pub to: DeploymentState,
    /// The environment the step deploys to.
    pub environment: String,
    /// The pool whose agent runs it.
    pub pool: String,
    /// The version it deploys.
    pub version: String,
    /// The version the environment runs now, if it runs one.
    pub replaces: Option<String>,
    /// The command the agent runs.
    pub command: String,
    /// The deployment: as it is after the step started, or unchanged on a dry run.
    pub deployment: DeploymentView,
    /// The step's job, when carried out (see `/api/queue/jobs/{id}`).
    pub job_id: Option<String>,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> Self {
        PlanView {
            step: p.step,
            executed: p.executed,
            from: p.from,
            to: p.to,
            environment: p.environment,
            pool: p.pool,
            version: p.version,
            replaces: p.replaces,
            command: p.command,
            deployment: p.deployment.into(),
            job_id: p.job.map(|j| j.id.to_string()),
        }
    }
}

/// Query parameters of `GET /api/dashboard/deployments/{id}/events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events after this `seq` (default 0: from the first); pass the last one seen to
    /// poll for new ones.
    pub after: Option<i64>,
}

/// Something that happened to a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventView {
    /// Position in the installation's event log; grows.
    pub seq: i64,
    /// The deployment.
    pub deployment_id: String,
    /// `state_changed` (a new deployment's first one too, with message `created`) or
    /// `gate_failed`.
    pub kind: String,
    /// The deployment's state after the event.
    #[schema(value_type = DeploymentStateSchema)]
    pub state: DeploymentState,
    /// Its state before (for `state_changed`).
    #[schema(value_type = Option<DeploymentStateSchema>)]
    pub from: Option<DeploymentState>,
    /// What happened, for humans.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<DeploymentEvent> for EventView {
    fn from(e: DeploymentEvent) -> Self {
        EventView {
            seq: e.seq,
            deployment_id: e.deployment.to_string(),
            kind: e.kind,
            state: e.state,
            from: e.from,
            message: e.message,
            at: e.at,
        }
    }
}

/// One gate's part of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GateView {
    /// `failure_rate`, `latency`, `health` or `signals`.
    pub gate: String,
    /// Its verdict.
    #[schema(value_type = VerdictSchema)]
    pub verdict: Verdict,
    /// What was measured (failed share, latency ratio, seconds failing), when anything was.
    pub value: Option<f64>,
    /// The limit it was held to.
    pub limit: Option<f64>,
    /// Samples it saw.
    pub samples: u64,
    /// Why, for humans.
    pub detail: String,
}

impl From<GateResult> for GateView {
    fn from(g: GateResult) -> Self {
        GateView {
            gate: g.gate,
            verdict: g.verdict,
            value: g.value,
            limit: g.limit,
            samples: g.samples,
            detail: g.detail,
        }
    }
}

/// One evaluation of a guarded deployment's gates.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EvaluationView {
    /// Position among the deployment's evaluations.
    pub seq: i64,
    /// The overall verdict.
    #[schema(value_type = VerdictSchema)]
    pub verdict: Verdict,
    /// Every gate.
    pub gates: Vec<GateView>,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<Evaluation> for EvaluationView {
    fn from(e: Evaluation) -> Self {
        EvaluationView {
            seq: e.seq,
            verdict: e.verdict,
            gates: e.gates.into_iter().map(GateView::from).collect(),
            at: e.at,
        }
    }
}

/// `POST /api/dashboard/signals`: a sample of a service version's own health, read by the
/// guard's gates.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    /// The service.
    #[schema(example = "checkout-api")]
    pub service: String,
    /// Its version.
    #[schema(example = "1.4.2")]
    pub version: String,
    /// Requests served in the sample (at most 1000000000).
    pub requests: u64,
    /// Of those, failed (at most `requests`).
    pub errors: u64,
    /// Their median latency, in milliseconds (0 to 3600000), when measured.
    pub latency_ms: Option<f64>,
}

/// The answer of a signal report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct AcceptedView {
    /// Always `true`: the sample was stored.
    pub accepted: bool,
}

/// The caller's jobs and deployments counted by state (states with none are left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SummaryView {
    /// Jobs by state (`QUEUED`, `RUNNING`, ...).
    pub jobs: BTreeMap<String, u64>,
    /// Deployments by state (`PENDING`, `GUARDING`, ...).
    pub deployments: BTreeMap<String, u64>,
}

impl From<Summary> for SummaryView {
    fn from(s: Summary) -> Self {
        SummaryView {
            jobs: s.jobs,
            deployments: s.deployments,
        }
    }
}
