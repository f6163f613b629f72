//! Agents as the API shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_types::{
    Agent, AgentCertificate, AgentStatus, Labels, Pool, PoolScale, RegistrationToken,
};
use utoipa::{IntoParams, ToSchema};

use super::LabelsSchema;

enum_schema!(
    /// The OpenAPI schema of [`AgentStatus`].
    AgentStatusSchema for AgentStatus,
    "AgentStatus",
    "REGISTERING -> HEALTHY <-> DEGRADED (deaf: withholds free slots while work waits) | UNHEALTHY (heartbeats 2 intervals late); OFFLINE when its stream ends or 3 intervals pass silent; TERMINATING while drained; TERMINATED once deregistered."
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
    /// Whether an operator drains it (`TERMINATING` while connected).
    pub draining: bool,
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
            draining: a.draining,
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

/// `POST /api/agents/{id}/status`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStatusBody {
    /// `TERMINATING` (drain) or `HEALTHY` (undrain).
    #[schema(value_type = AgentStatusSchema)]
    pub status: AgentStatus,
}

/// `POST /api/agents/register`: enroll an agent with a registration token.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgentBody {
    /// The registration token (`syt_…`).
    pub token: String,
    /// The agent's name, unique in the tenant.
    #[schema(example = "builder-1")]
    pub name: String,
    /// The labels it offers.
    #[serde(default)]
    #[schema(value_type = LabelsSchema)]
    pub labels: Labels,
    /// A PKCS #10 certificate signing request for the agent's key, PEM.
    pub csr_pem: String,
}

/// A certificate signed by the Switchyard CA.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CertificateView {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// When the certificate expires.
    pub expires_at: DateTime<Utc>,
    /// The identity it names (`spiffe://switchyard/tenant/T/pool/P/agent/A`).
    pub spiffe_id: String,
}

impl From<AgentCertificate> for CertificateView {
    fn from(c: AgentCertificate) -> Self {
        CertificateView {
            certificate_pem: c.cert_pem,
            ca_pem: c.ca_pem,
            expires_at: c.expires_at,
            spiffe_id: c.identity.to_string(),
        }
    }
}

/// An agent just enrolled, with its certificate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnrolledView {
    /// The registered agent.
    pub agent: AgentView,
    /// Its certificate.
    pub certificate: CertificateView,
}

/// A registration token, without its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RegistrationTokenView {
    /// Its id.
    pub id: String,
    /// The pool an agent enrolled with it joins.
    pub pool: String,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was used, if it was.
    pub used_at: Option<DateTime<Utc>>,
    /// The agent it enrolled, if it was used.
    pub agent_id: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<RegistrationToken> for RegistrationTokenView {
    fn from(t: RegistrationToken) -> Self {
        RegistrationTokenView {
            id: t.id.to_string(),
            pool: t.pool,
            created_by: t.created_by,
            created_at: t.created_at,
            expires_at: t.expires_at,
            used_at: t.used_at,
            agent_id: t.agent_id.map(|id| id.to_string()),
            revoked_at: t.revoked_at,
        }
    }
}

/// `POST /api/agents/registration-tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRegistrationTokenBody {
    /// The pool the enrolled agent joins.
    #[schema(example = "build")]
    pub pool: String,
    /// How long the token stays valid: 1 s to 30 days (default 3600).
    pub ttl_seconds: Option<u32>,
}

/// A new registration token: the token is shown here and never again.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedRegistrationTokenView {
    /// The token to hand to `switchyard agent enroll --token` (`syt_…`).
    pub token: String,
    /// Its record.
    pub registration_token: RegistrationTokenView,
}

/// A pool of agents: its settings, its agents and work, and the scaling signal.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolView {
    /// The pool's name.
    pub name: String,
    /// The fewest agents it should have.
    pub min_agents: u32,
    /// The most agents it should have.
    pub max_agents: u32,
    /// A pinned agent count; null while the signal follows demand.
    pub target_agents: Option<u32>,
    /// Registered agents, deregistered ones excepted.
    pub agents: u32,
    /// Agents connected now.
    pub connected: u32,
    /// Slots of the connected agents.
    pub capacity: u32,
    /// Jobs the connected agents hold.
    pub running: u32,
    /// Jobs waiting in the pool.
    pub queued: u64,
    /// Age in seconds of the oldest due job waiting; 0 when none.
    pub oldest_wait_seconds: f64,
    /// The scaling signal: how many agents the pool should have now.
    pub desired_agents: u32,
}

impl From<Pool> for PoolView {
    fn from(p: Pool) -> Self {
        PoolView {
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

/// `POST /api/agents/pools/{name}/scale`: what is left out keeps its value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalePoolBody {
    /// A new lower bound.
    pub min_agents: Option<u32>,
    /// A new upper bound (at most 10000).
    pub max_agents: Option<u32>,
    /// Pin the agent count.
    pub target_agents: Option<u32>,
    /// Unpin: the signal follows demand again.
    #[serde(default)]
    pub follow_demand: bool,
}

impl From<ScalePoolBody> for PoolScale {
    fn from(b: ScalePoolBody) -> Self {
        PoolScale {
            min_agents: b.min_agents,
            max_agents: b.max_agents,
            target_agents: b.target_agents,
            follow_demand: b.follow_demand,
        }
    }
}
