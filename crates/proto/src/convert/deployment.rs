//! Deployments: environments, deployments, events, evaluations and their enums.

use std::time::Duration;

use switchyard_types::{
    Deployment, DeploymentEvent, DeploymentState, Environment, Error, Evaluation, GateResult,
    GuardSettings, Notification, NotificationState, Result, StepKind, Verdict, Webhook,
};

use super::{datetime, required, timestamp, unknown_enum};
use crate::v1 as pb;

impl From<DeploymentState> for pb::DeploymentState {
    fn from(state: DeploymentState) -> Self {
        match state {
            DeploymentState::Pending => pb::DeploymentState::Pending,
            DeploymentState::Staging => pb::DeploymentState::Staging,
            DeploymentState::Staged => pb::DeploymentState::Staged,
            DeploymentState::Promoting => pb::DeploymentState::Promoting,
            DeploymentState::Guarding => pb::DeploymentState::Guarding,
            DeploymentState::Succeeded => pb::DeploymentState::Succeeded,
            DeploymentState::RollingBack => pb::DeploymentState::RollingBack,
            DeploymentState::RolledBack => pb::DeploymentState::RolledBack,
            DeploymentState::Failed => pb::DeploymentState::Failed,
        }
    }
}

/// Reads a deployment state off the wire: `UNSPECIFIED` is `None`; an unknown number is
/// invalid, reported against `field`.
pub fn deployment_state_from_pb(value: i32, field: &str) -> Result<Option<DeploymentState>> {
    match pb::DeploymentState::try_from(value) {
        Ok(pb::DeploymentState::Unspecified) => Ok(None),
        Ok(pb::DeploymentState::Pending) => Ok(Some(DeploymentState::Pending)),
        Ok(pb::DeploymentState::Staging) => Ok(Some(DeploymentState::Staging)),
        Ok(pb::DeploymentState::Staged) => Ok(Some(DeploymentState::Staged)),
        Ok(pb::DeploymentState::Promoting) => Ok(Some(DeploymentState::Promoting)),
        Ok(pb::DeploymentState::Guarding) => Ok(Some(DeploymentState::Guarding)),
        Ok(pb::DeploymentState::Succeeded) => Ok(Some(DeploymentState::Succeeded)),
        Ok(pb::DeploymentState::RollingBack) => Ok(Some(DeploymentState::RollingBack)),
        Ok(pb::DeploymentState::RolledBack) => Ok(Some(DeploymentState::RolledBack)),
        Ok(pb::DeploymentState::Failed) => Ok(Some(DeploymentState::Failed)),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

impl From<StepKind> for pb::DeploymentStep {
    fn from(step: StepKind) -> Self {
        match step {
            StepKind::Stage => pb::DeploymentStep::Stage,
            StepKind::Promote => pb::DeploymentStep::Promote,
            StepKind::Rollback => pb::DeploymentStep::Rollback,
        }
    }
}

impl From<Verdict> for pb::Verdict {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Inconclusive => pb::Verdict::Inconclusive,
            Verdict::Pass => pb::Verdict::Pass,
            Verdict::Fail => pb::Verdict::Fail,
            Verdict::Skipped => pb::Verdict::Skipped,
        }
    }
}

/// Reads a verdict off the wire; `UNSPECIFIED` or unknown values are invalid.
pub fn verdict_from_pb(value: i32, field: &str) -> Result<Verdict> {
    match pb::Verdict::try_from(value) {
        Ok(pb::Verdict::Inconclusive) => Ok(Verdict::Inconclusive),
        Ok(pb::Verdict::Pass) => Ok(Verdict::Pass),
        Ok(pb::Verdict::Fail) => Ok(Verdict::Fail),
        Ok(pb::Verdict::Skipped) => Ok(Verdict::Skipped),
        Ok(pb::Verdict::Unspecified) => Err(Error::invalid(field, "is required")),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

impl From<Environment> for pb::Environment {
    fn from(e: Environment) -> Self {
        pb::Environment {
            name: e.name,
            pool: e.pool,
            deploy_command: e.deploy_command,
            health_url: e.health_url,
            secrets: e.secrets,
            created_at: Some(timestamp(e.created_at)),
            updated_at: Some(timestamp(e.updated_at)),
        }
    }
}

impl From<GuardSettings> for pb::GuardSettings {
    fn from(g: GuardSettings) -> Self {
        pb::GuardSettings {
            window_seconds: g.window.as_secs(),
            interval_seconds: g.interval.as_secs(),
            lookback_seconds: g.lookback.as_secs(),
            probe_interval_seconds: g.probe_interval.as_secs(),
            health_grace_seconds: g.health_grace.as_secs(),
            min_samples: Some(g.min_samples),
            max_failure_rate: Some(g.max_failure_rate),
            max_latency_ratio: Some(g.max_latency_ratio),
        }
    }
}

/// Reads guard settings a server sent (clients): every field is filled in.
impl From<pb::GuardSettings> for GuardSettings {
    fn from(g: pb::GuardSettings) -> Self {
        let d = GuardSettings::default();
        GuardSettings {
            window: Duration::from_secs(g.window_seconds),
            interval: Duration::from_secs(g.interval_seconds),
            lookback: Duration::from_secs(g.lookback_seconds),
            probe_interval: Duration::from_secs(g.probe_interval_seconds),
            health_grace: Duration::from_secs(g.health_grace_seconds),
            min_samples: g.min_samples.unwrap_or(d.min_samples),
            max_failure_rate: g.max_failure_rate.unwrap_or(d.max_failure_rate),
            max_latency_ratio: g.max_latency_ratio.unwrap_or(d.max_latency_ratio),
        }
    }
}

impl From<Deployment> for pb::Deployment {
    fn from(d: Deployment) -> Self {
        pb::Deployment {
            id: d.id.to_string(),
            tenant: d.tenant.to_string(),
            service: d.service,
            version: d.version,
            staging_environment: d.staging_environment,
            environment: d.environment,
            state: pb::DeploymentState::from(d.state).into(),
            guard: Some(d.guard.into()),
            step: d
                .step
                .map_or(pb::DeploymentStep::Unspecified, pb::DeploymentStep::from)
                .into(),
            step_job_id: d.step_job.map(|j| j.to_string()),
            previous_version: d.previous_version,
            rollback_version: d.rollback_version,
            reason: d.reason,
            guard_started_at: d.guard_started_at.map(timestamp),
            guard_ends_at: d.guard_ends_at.map(timestamp),
            created_by: d.created_by,
            created_at: Some(timestamp(d.created_at)),
            updated_at: Some(timestamp(d.updated_at)),
            finished_at: d.finished_at.map(timestamp),
        }
    }
}

impl From<DeploymentEvent> for pb::DeploymentEvent {
    fn from(e: DeploymentEvent) -> Self {
        pb::DeploymentEvent {
            seq: e.seq,
            deployment_id: e.deployment.to_string(),
            kind: e.kind,
            state: pb::DeploymentState::from(e.state).into(),
            from: e
                .from
                .map_or(pb::DeploymentState::Unspecified, pb::DeploymentState::from)
                .into(),
            message: e.message,
            at: Some(timestamp(e.at)),
        }
    }
}

/// Reads an event a server sent (clients: the CLI's `deploy watch`).
impl TryFrom<pb::DeploymentEvent> for DeploymentEvent {
    type Error = Error;

    fn try_from(e: pb::DeploymentEvent) -> Result<Self> {
        Ok(DeploymentEvent {
            seq: e.seq,
            deployment: e.deployment_id.parse()?,
            // The tenant is implied by the caller; events on the wire do not repeat it.
            tenant: switchyard_types::TenantId::default_tenant(),
            kind: e.kind,
            state: required(deployment_state_from_pb(e.state, "state")?, "state")?,
            from: deployment_state_from_pb(e.from, "from")?,
            message: e.message,
            at: datetime(required(e.at.as_ref(), "at")?, "at")?,
        })
    }
}

impl From<GateResult> for pb::GateResult {
    fn from(g: GateResult) -> Self {
        pb::GateResult {
            gate: g.gate,
            verdict: pb::Verdict::from(g.verdict).into(),
            value: g.value,
            limit: g.limit,
            samples: g.samples,
            detail: g.detail,
        }
    }
}

impl From<Evaluation> for pb::Evaluation {
    fn from(e: Evaluation) -> Self {
        pb::Evaluation {
            seq: e.seq,
            verdict: pb::Verdict::from(e.verdict).into(),
            gates: e.gates.into_iter().map(pb::GateResult::from).collect(),
            at: Some(timestamp(e.at)),
        }
    }
}

impl From<NotificationState> for pb::NotificationState {
    fn from(state: NotificationState) -> Self {
        match state {
            NotificationState::Pending => pb::NotificationState::Pending,
            NotificationState::Delivered => pb::NotificationState::Delivered,
            NotificationState::GivenUp => pb::NotificationState::GivenUp,
        }
    }
}

/// Reads a notification state off the wire (clients); `UNSPECIFIED` or unknown values are
/// invalid.
pub fn notification_state_from_pb(value: i32, field: &str) -> Result<NotificationState> {
    match pb::NotificationState::try_from(value) {
        Ok(pb::NotificationState::Pending) => Ok(NotificationState::Pending),
        Ok(pb::NotificationState::Delivered) => Ok(NotificationState::Delivered),
        Ok(pb::NotificationState::GivenUp) => Ok(NotificationState::GivenUp),
        Ok(pb::NotificationState::Unspecified) => Err(Error::invalid(field, "is required")),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

impl From<Webhook> for pb::Webhook {
    fn from(w: Webhook) -> Self {
        pb::Webhook {
            id: w.id.to_string(),
            url: w.url,
            created_at: Some(timestamp(w.created_at)),
        }
    }
}

impl From<Notification> for pb::Notification {
    fn from(n: Notification) -> Self {
        pb::Notification {
            id: n.id.to_string(),
            webhook_id: n.webhook.map(|w| w.to_string()).unwrap_or_default(),
            url: n.url.unwrap_or_default(),
            state: pb::NotificationState::from(n.state).into(),
            attempts: n.attempts,
            last_error: n.last_error,
            next_attempt_at: Some(timestamp(n.next_attempt_at)),
            delivered_at: n.delivered_at.map(timestamp),
            event_seq: n.event_seq,
            event_kind: n.event_kind,
            event_state: pb::DeploymentState::from(n.event_state).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_verdict_round_trips() {
        for s in DeploymentState::ALL {
            let n = i32::from(pb::DeploymentState::from(*s));
            assert_eq!(deployment_state_from_pb(n, "state").unwrap(), Some(*s));
        }
        assert_eq!(deployment_state_from_pb(0, "state").unwrap(), None);
        assert!(deployment_state_from_pb(99, "state").is_err());
        for v in Verdict::ALL {
            let n = i32::from(pb::Verdict::from(*v));
            assert_eq!(verdict_from_pb(n, "verdict").unwrap(), *v);
        }
        assert!(verdict_from_pb(0, "verdict").is_err());
        for s in NotificationState::ALL {
            let n = i32::from(pb::NotificationState::from(*s));
            assert_eq!(notification_state_from_pb(n, "state").unwrap(), *s);
        }
        assert!(notification_state_from_pb(0, "state").is_err());
    }

    #[test]
    fn guard_settings_round_trip() {
        let g = GuardSettings {
            window: Duration::from_secs(120),
            min_samples: 0,
            ..GuardSettings::default()
        };
        assert_eq!(GuardSettings::from(pb::GuardSettings::from(g)), g);
    }
}
