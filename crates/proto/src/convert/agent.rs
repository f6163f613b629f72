//! Agents: the registry record, certificates and registration tokens.

use switchyard_types::{Agent, AgentCertificate, AgentStatus, Pool, RegistrationToken};

use switchyard_types::{Error, Result};

use super::{timestamp, unknown_enum};
use crate::v1 as pb;

impl From<AgentStatus> for pb::AgentStatus {
    fn from(status: AgentStatus) -> Self {
        match status {
            AgentStatus::Registering => pb::AgentStatus::Registering,
            AgentStatus::Healthy => pb::AgentStatus::Healthy,
            AgentStatus::Degraded => pb::AgentStatus::Degraded,
            AgentStatus::Unhealthy => pb::AgentStatus::Unhealthy,
            AgentStatus::Offline => pb::AgentStatus::Offline,
            AgentStatus::Terminating => pb::AgentStatus::Terminating,
            AgentStatus::Terminated => pb::AgentStatus::Terminated,
        }
    }
}

/// Reads an `AgentStatus` off the wire; `UNSPECIFIED` or unknown values are invalid.
pub fn agent_status_from_pb(value: i32, field: &str) -> Result<AgentStatus> {
    match pb::AgentStatus::try_from(value) {
        Ok(pb::AgentStatus::Registering) => Ok(AgentStatus::Registering),
        Ok(pb::AgentStatus::Healthy) => Ok(AgentStatus::Healthy),
        Ok(pb::AgentStatus::Degraded) => Ok(AgentStatus::Degraded),
        Ok(pb::AgentStatus::Unhealthy) => Ok(AgentStatus::Unhealthy),
        Ok(pb::AgentStatus::Offline) => Ok(AgentStatus::Offline),
        Ok(pb::AgentStatus::Terminating) => Ok(AgentStatus::Terminating),
        Ok(pb::AgentStatus::Terminated) => Ok(AgentStatus::Terminated),
        Ok(pb::AgentStatus::Unspecified) => Err(Error::invalid(field, "is required")),
        Err(_) => Err(unknown_enum(field, value)),
    }
}

impl From<Agent> for pb::Agent {
    fn from(a: Agent) -> Self {
        pb::Agent {
            id: a.id.to_string(),
            name: a.name,
            pool: a.pool,
            labels: a.labels,
            status: pb::AgentStatus::from(a.status).into(),
            capacity: a.capacity,
            running: a.running,
            last_heartbeat_at: Some(timestamp(a.last_heartbeat_at)),
            created_at: Some(timestamp(a.created_at)),
            version: a.version,
            draining: a.draining,
        }
    }
}

impl From<AgentCertificate> for pb::Certificate {
    fn from(c: AgentCertificate) -> Self {
        pb::Certificate {
            certificate_pem: c.cert_pem,
            ca_pem: c.ca_pem,
            expires_at: Some(timestamp(c.expires_at)),
            spiffe_id: c.identity.to_string(),
        }
    }
}

impl From<RegistrationToken> for pb::RegistrationToken {
    fn from(t: RegistrationToken) -> Self {
        pb::RegistrationToken {
            id: t.id.to_string(),
            pool: t.pool,
            created_by: t.created_by,
            created_at: Some(timestamp(t.created_at)),
            expires_at: Some(timestamp(t.expires_at)),
            used_at: t.used_at.map(timestamp),
            agent_id: t.agent_id.map(|id| id.to_string()).unwrap_or_default(),
            revoked_at: t.revoked_at.map(timestamp),
        }
    }
}

impl From<Pool> for pb::Pool {
    fn from(p: Pool) -> Self {
        pb::Pool {
            name: p.settings.pool,
            min_agents: p.settings.min_agents,
            max_agents: p.settings.max_agents,
            target_agents: p.settings.target_agents,
            agents: p.agents,
            connected: p.connected,
            capacity: p.capacity,
            running: p.running,
            queued: p.queued,
            oldest_wait_seconds: p.oldest_wait_seconds,
            desired_agents: p.desired_agents,
        }
    }
}
