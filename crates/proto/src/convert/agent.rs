//! Agents: the registry record.

use switchyard_types::{Agent, AgentStatus};

use super::timestamp;
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
        }
    }
}
