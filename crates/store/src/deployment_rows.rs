//! The deployment rows both adapters decode: one generic row per table, whose id, instant and
//! JSON columns take each database's own types ([`Lite`]: text, milliseconds, text; [`Pg`]:
//! `uuid`, `timestamptz`, `jsonb`), converted once here into the domain's types. And the rules
//! both adapters share: which columns a transition sets, and the errors they report.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use switchyard_types::{
    Deployment, DeploymentEvent, DeploymentId, DeploymentState, Environment, Error, Evaluation,
    GateResult, GuardSettings, JobId, JobState, ProbeResult, Result, StepKind, Summary, Transition,
    Verdict, VersionFigures,
};
use uuid::Uuid;

use crate::identity_rows::{corrupt, tenant_id};

/// How one database stores ids, instants and JSON.
pub(crate) trait Dialect {
    /// An id column.
    type Id;
    /// An instant column.
    type At;
    /// A JSON column.
    type Json;
    /// Decodes an id.
    fn id(v: Self::Id) -> Result<Uuid>;
    /// Decodes an instant.
    fn at(v: Self::At) -> Result<DateTime<Utc>>;
    /// Decodes JSON.
    fn json(v: Self::Json) -> Result<Value>;
}

/// SQLite: UUID text, milliseconds since the epoch, JSON text.
pub(crate) struct Lite;

impl Dialect for Lite {
    type Id = String;
    type At = i64;
    type Json = String;
    fn id(v: String) -> Result<Uuid> {
        crate::identity_rows::uuid(&v)
    }
    fn at(v: i64) -> Result<DateTime<Utc>> {
        crate::identity_rows::at(v)
    }
    fn json(v: String) -> Result<Value> {
        serde_json::from_str(&v).map_err(|_| corrupt("JSON"))
    }
}

/// PostgreSQL: `uuid`, `timestamptz`, `jsonb`.
pub(crate) struct Pg;

impl Dialect for Pg {
    type Id = Uuid;
    type At = DateTime<Utc>;
    type Json = Value;
    fn id(v: Uuid) -> Result<Uuid> {
        Ok(v)
    }
    fn at(v: DateTime<Utc>) -> Result<DateTime<Utc>> {
        Ok(v)
    }
    fn json(v: Value) -> Result<Value> {
        Ok(v)
    }
}

fn opt_at<D: Dialect>(v: Option<D::At>) -> Result<Option<DateTime<Utc>>> {
    v.map(D::at).transpose()
}

fn state(n: i16) -> Result<DeploymentState> {
    DeploymentState::from_i16(n).ok_or_else(|| corrupt("deployment state"))
}

/// An `environments` row.
#[derive(sqlx::FromRow)]
pub(crate) struct EnvironmentRow<T, J> {
    tenant_id: String,
    name: String,
    pool: String,
    deploy_command: String,
    health_url: Option<String>,
    secrets: J,
    created_at: T,
    updated_at: T,
}

impl<T, J> EnvironmentRow<T, J> {
    /// The environment.
    pub(crate) fn decode<D: Dialect<At = T, Json = J>>(self) -> Result<Environment> {
        Ok(Environment {
            tenant: tenant_id(&self.tenant_id)?,
            name: self.name,
            pool: self.pool,
            deploy_command: self.deploy_command,
            health_url: self.health_url,
            secrets: serde_json::from_value(D::json(self.secrets)?)
                .map_err(|_| corrupt("secrets"))?,
            created_at: D::at(self.created_at)?,
            updated_at: D::at(self.updated_at)?,
        })
    }
}

/// The columns of [`DeploymentRow`].
pub(crate) const DEPLOYMENT_COLUMNS: &str = "id, tenant_id, service, version, \
    staging_environment, environment, state, guard, step, step_job, previous_version, \
    rollback_version, reason, guard_started_at, guard_ends_at, created_by, created_at, \
    updated_at, finished_at";

/// A `deployments` row.
#[derive(sqlx::FromRow)]
pub(crate) struct DeploymentRow<I, T, J> {
    id: I,
    tenant_id: String,
    service: String,
    version: String,
    staging_environment: String,
    environment: String,
    state: i16,
    guard: J,
    step: Option<i16>,
    step_job: Option<I>,
    previous_version: Option<String>,
    rollback_version: Option<String>,
    reason: Option<String>,
    guard_started_at: Option<T>,
    guard_ends_at: Option<T>,
    created_by: String,
    created_at: T,
    updated_at: T,
    finished_at: Option<T>,
}

impl<I, T, J> DeploymentRow<I, T, J> {
    /// The deployment.
    pub(crate) fn decode<D: Dialect<Id = I, At = T, Json = J>>(self) -> Result<Deployment> {
        let guard: GuardSettings =
            serde_json::from_value(D::json(self.guard)?).map_err(|_| corrupt("guard"))?;
        Ok(Deployment {
            id: DeploymentId(D::id(self.id)?),
            tenant: tenant_id(&self.tenant_id)?,
            service: self.service,
            version: self.version,
            staging_environment: self.staging_environment,
            environment: self.environment,
            state: state(self.state)?,
            guard,
            step: self
                .step
                .map(|s| StepKind::from_i16(s).ok_or_else(|| corrupt("step")))
                .transpose()?,
            step_job: self.step_job.map(D::id).transpose()?.map(JobId),
            previous_version: self.previous_version,
            rollback_version: self.rollback_version,
            reason: self.reason,
            guard_started_at: opt_at::<D>(self.guard_started_at)?,
            guard_ends_at: opt_at::<D>(self.guard_ends_at)?,
            created_by: self.created_by,
            created_at: D::at(self.created_at)?,
            updated_at: D::at(self.updated_at)?,
            finished_at: opt_at::<D>(self.finished_at)?,
        })
    }
}

/// A `deployment_events` row.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRow<I, T> {
    seq: i64,
    tenant_id: String,
    deployment_id: I,
    kind: String,
    state: i16,
    from_state: Option<i16>,
    message: String,
    at: T,
}

impl<I, T> EventRow<I, T> {
    /// The event.
    pub(crate) fn decode<D: Dialect<Id = I, At = T>>(self) -> Result<DeploymentEvent> {
        Ok(DeploymentEvent {
            seq: self.seq,
            deployment: DeploymentId(D::id(self.deployment_id)?),
            tenant: tenant_id(&self.tenant_id)?,
            kind: self.kind,
            state: state(self.state)?,
            from: self.from_state.map(state).transpose()?,
            message: self.message,
            at: D::at(self.at)?,
        })
    }
}

/// A `gate_evaluations` row.
#[derive(sqlx::FromRow)]
pub(crate) struct EvaluationRow<I, T, J> {
    seq: i64,
    deployment_id: I,
    verdict: i16,
    gates: J,
    at: T,
}

impl<I, T, J> EvaluationRow<I, T, J> {
    /// The evaluation.
    pub(crate) fn decode<D: Dialect<Id = I, At = T, Json = J>>(self) -> Result<Evaluation> {
        let gates: Vec<GateResult> =
            serde_json::from_value(D::json(self.gates)?).map_err(|_| corrupt("gates"))?;
        Ok(Evaluation {
            seq: self.seq,
            deployment: DeploymentId(D::id(self.deployment_id)?),
            verdict: Verdict::from_i16(self.verdict).ok_or_else(|| corrupt("verdict"))?,
            gates,
            at: D::at(self.at)?,
        })
    }
}

/// A probe job's state and issue instant.
#[derive(sqlx::FromRow)]
pub(crate) struct ProbeRow<T> {
    state: i16,
    at: T,
}

impl<T> ProbeRow<T> {
    /// The probe's result: ok when its job completed (the agent saw a 200).
    pub(crate) fn decode<D: Dialect<At = T>>(self) -> Result<ProbeResult> {
        Ok(ProbeResult {
            at: D::at(self.at)?,
            ok: self.state == JobState::Completed.as_i16(),
        })
    }
}

/// A stored event's kind for a state change.
pub(crate) const STATE_CHANGED: &str = "state_changed";
/// A stored event's kind for a failed gate.
pub(crate) const GATE_FAILED: &str = "gate_failed";
/// The message of a new deployment's first event.
pub(crate) const CREATED: &str = "created";

/// The environment a deployment in `to` holds for its service, if any.
pub(crate) fn holds(d: &Deployment, to: DeploymentState) -> Option<String> {
    to.holds().map(|stage| match stage {
        switchyard_types::Stage::Staging => d.staging_environment.clone(),
        switchyard_types::Stage::Production => d.environment.clone(),
    })
}

/// The version a transition makes the production release, if it makes one.
pub(crate) fn released(d: &Deployment, change: &Transition) -> Option<String> {
    match (change.from, change.to) {
        (DeploymentState::Promoting, DeploymentState::Guarding) => Some(d.version.clone()),
        (DeploymentState::RollingBack, DeploymentState::RolledBack) => d.rollback_version.clone(),
        _ => None,
    }
}

/// The refusal of a transition from a state the deployment is not in.
pub(crate) fn not_in(d: &Deployment, change: &Transition) -> Error {
    Error::conflict(format!(
        "deployment {} is {}, not {}",
        d.id, d.state, change.from
    ))
}

/// The refusal of a transition into an environment another deployment of the service holds.
pub(crate) fn held(d: &Deployment, env: &str) -> Error {
    Error::conflict(format!(
        "another deployment of {} is deploying to or guarded in {env}; wait for it or roll it back",
        d.service
    ))
}

/// A transition's write failed: a unique violation means another deployment holds the
/// environment.
pub(crate) fn transition_failed(d: &Deployment, env: Option<&str>, err: Error) -> Error {
    match env {
        Some(env) if err.kind == switchyard_types::ErrorKind::AlreadyExists => held(d, env),
        Some(_) | None => err,
    }
}

/// A job's state, start and finish, as the figures read them.
pub(crate) type FinishedJob = (i16, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A version's figures from its finished jobs and its signals (`(requests, errors,
/// latency_ms)` per sample).
pub(crate) fn figures(
    jobs: &[FinishedJob],
    signals: &[(i64, i64, Option<f64>)],
    seen: bool,
) -> VersionFigures {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let completed = JobState::Completed.as_i16();
    VersionFigures {
        jobs_finished: jobs.len() as u64,
        jobs_failed: jobs.iter().filter(|(s, _, _)| *s != completed).count() as u64,
        run_seconds: jobs
            .iter()
            .filter(|(s, _, _)| *s == completed)
            .filter_map(|(_, started, finished)| {
                Some(((*finished)? - (*started)?).as_seconds_f64())
            })
            .collect(),
        signal_requests: signals.iter().map(|s| count(s.0)).sum(),
        signal_errors: signals.iter().map(|s| count(s.1)).sum(),
        signal_latencies_ms: signals.iter().filter_map(|s| s.2).collect(),
        signals_seen: seen,
    }
}

/// Counts by state number, named.
pub(crate) fn summary(jobs: &[(i16, i64)], deployments: &[(i16, i64)]) -> Result<Summary> {
    let mut out = Summary {
        deployments: deployment_counts(deployments)?,
        ..Summary::default()
    };
    for (state, n) in jobs {
        let state = JobState::from_i16(*state).ok_or_else(|| corrupt("job state"))?;
        out.jobs
            .insert(state.as_str().to_owned(), u64::try_from(*n).unwrap_or(0));
    }
    Ok(out)
}

/// Deployment counts by state number, named.
pub(crate) fn deployment_counts(rows: &[(i16, i64)]) -> Result<BTreeMap<String, u64>> {
    rows.iter()
        .map(|(s, n)| {
            Ok((
                state(*s)?.as_str().to_owned(),
                u64::try_from(*n).unwrap_or(0),
            ))
        })
        .collect()
}
