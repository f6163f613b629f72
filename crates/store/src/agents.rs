//! The agent registry (DESIGN §3.5): who is connected, to which pool, with what capacity, and
//! which of an agent's streams is its newest. Every operation is scoped by tenant.

use async_trait::async_trait;
use switchyard_types::{Agent, AgentHello, AgentId, AgentStatus, Result, TenantId};
use uuid::Uuid;

/// Storage of the agent registry.
#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Registers an agent on a new stream, or re-registers it by name (keeping its id):
    /// `HEALTHY`, heartbeat now (database clock), `hello.session` remembered as its newest
    /// stream. `NotFound` when the tenant does not exist.
    async fn connect_agent(&self, hello: &AgentHello) -> Result<Agent>;

    /// A heartbeat on stream `session`: records the time and how many jobs the agent holds.
    /// `false`, changing nothing, when a newer stream of the agent replaced this one.
    async fn agent_heartbeat(
        &self,
        tenant: &TenantId,
        id: AgentId,
        session: Uuid,
        running: u32,
    ) -> Result<bool>;

    /// Stream `session` ended: the agent becomes `status` (`OFFLINE`), unless a newer stream
    /// replaced this one (then nothing changes).
    async fn disconnect_agent(
        &self,
        tenant: &TenantId,
        id: AgentId,
        session: Uuid,
        status: AgentStatus,
    ) -> Result<()>;

    /// The tenant's agents (of `pool` only, when given), most recently seen first.
    async fn list_agents(&self, tenant: &TenantId, pool: Option<&str>) -> Result<Vec<Agent>>;

    /// One agent; `NotFound` when absent or another tenant's.
    async fn agent(&self, tenant: &TenantId, id: AgentId) -> Result<Agent>;
}
