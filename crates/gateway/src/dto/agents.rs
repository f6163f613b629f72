//! Agents as the API shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_types::{Agent, AgentStatus, Labels};
use utoipa::{IntoParams, ToSchema};

use super::LabelsSchema;

enum_schema!(
    /// The OpenAPI schema of [`AgentStatus`].
    AgentStatusSchema for AgentStatus,
    "AgentStatus",
    "REGISTERING -> HEALTHY <-> DEGRADED | UNHEALTHY; OFFLINE when its stream ends; TERMINATING while it drains; TERMINATED once deregistered."
);

/// An agent in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AgentView {
    /// The agent's id (a UUIDv7).
    pub id: String,
    /// Its name, unique in the tenant.
    pub name: String,
    /// The pool it takes work from.
    pub pool: String,
    /// The labels it offers.
    #[schema(value_type = LabelsSchema)]
    pub labels: Labels,
    /// Its state.
    #[schema(value_type = AgentStatusSchema)]
    pub status: AgentStatus,
    /// Jobs it can run at once.
    pub capacity: u32,
    /// Jobs it held at its last heartbeat.
    pub running: u32,
    /// Its last heartbeat (or connect).
    pub last_heartbeat_at: DateTime<Utc>,
    /// When it first registered.
    pub created_at: DateTime<Utc>,
    /// The version it reported.
    pub version: String,
}

impl From<Agent> for AgentView {
    fn from(a: Agent) -> Self {
        AgentView {
            id: a.id.to_string(),
            name: a.name,
            pool: a.pool,
            labels: a.labels,
            status: a.status,
            capacity: a.capacity,
            running: a.running,
            last_heartbeat_at: a.last_heartbeat_at,
            created_at: a.created_at,
            version: a.version,
        }
    }
}

/// Filters of the agent list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAgentsQuery {
    /// Only agents of this pool.
    pub pool: Option<String>,
}
