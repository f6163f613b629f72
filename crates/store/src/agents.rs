//! The agent registry (DESIGN §3.5): who is connected, to which pool, with what capacity, and
//! which of an agent's streams is its newest; and the one-time registration tokens an agent
//! exchanges for its enrollment. Every operation is scoped by tenant, except the enrollment,
//! whose token tells the tenant.

use async_trait::async_trait;
use switchyard_types::{
    Agent, AgentHello, AgentId, AgentStatus, Enrollment, NewRegistrationToken, PoolSettings,
    RegistrationToken, RegistrationTokenId, Result, TenantId,
};
use uuid::Uuid;

/// What a stream's heartbeat records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Jobs the agent holds.
    pub running: u32,
    /// Its state as its stream sees it: `HEALTHY`, or `DEGRADED` when it takes no work while
    /// work waits.
    pub status: AgentStatus,
    /// The agent's lease from now: every job it holds through its stream stays leased at
    /// least that long.
    pub lease: std::time::Duration,
}

/// One stream's heartbeat, for [`AgentStore::agent_heartbeats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBeat {
    /// The agent's tenant.
    pub tenant: TenantId,
    /// The agent.
    pub id: AgentId,
    /// The stream.
    pub session: Uuid,
    /// What it records.
    pub beat: Beat,
}

/// Storage of the agent registry.
#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Registers an agent on a new stream: `HEALTHY`, heartbeat now (database clock),
    /// `hello.session` remembered as its newest stream. With `hello.id` (an enrolled agent,
    /// authenticated by its client certificate) the agent of that id in `hello.tenant` is
    /// updated and keeps its enrolled name (`hello.name` is ignored): `NotFound` when absent,
    /// `PermissionDenied` when it was deregistered (`TERMINATED`) or `hello.pool` is not its
    /// pool. Without it, the agent is registered, or re-registered by name (keeping its id,
    /// and reviving a deregistered one), unless an enrolled agent holds that name
    /// (`PermissionDenied`); `NotFound` when the tenant does not exist.
    async fn connect_agent(&self, hello: &AgentHello) -> Result<Agent>;

    /// Heartbeats of many streams in one round trip: for each, the time, how many jobs the
    /// agent holds and its state as its stream sees it. Returns, in order, whether an operator
    /// drains each agent; `None`, changing nothing, for a stream a newer one replaced or whose
    /// agent was deregistered.
    async fn agent_heartbeats(&self, beats: &[StreamBeat]) -> Result<Vec<Option<bool>>>;

    /// [`AgentStore::agent_heartbeats`] for one stream.
    async fn agent_heartbeat(
        &self,
        tenant: &TenantId,
        id: AgentId,
        session: Uuid,
        beat: &Beat,
    ) -> Result<Option<bool>> {
        let one = StreamBeat {
            tenant: tenant.clone(),
            id,
            session,
            beat: *beat,
        };
        Ok(self.agent_heartbeats(&[one]).await?.pop().flatten())
    }

    /// Drains (`true`: no new work, status `TERMINATING` while connected) or undrains an agent.
    /// `NotFound` when absent or another tenant's, `Conflict` when deregistered.
    async fn set_agent_draining(
        &self,
        tenant: &TenantId,
        id: AgentId,
        draining: bool,
    ) -> Result<Agent>;

    /// The tenant's configured pools, by name.
    async fn pool_settings(&self, tenant: &TenantId) -> Result<Vec<PoolSettings>>;

    /// Stores a pool's settings (creating or replacing them). `NotFound` when the tenant does
    /// not exist.
    async fn set_pool_settings(
        &self,
        tenant: &TenantId,
        settings: &PoolSettings,
    ) -> Result<PoolSettings>;

    /// A heartbeat without a stream (simple clients): the time, and `HEALTHY`. `NotFound` when
    /// absent or another tenant's, `Conflict` when deregistered.
    async fn touch_agent(&self, tenant: &TenantId, id: AgentId) -> Result<Agent>;

    /// Stream `session` ended: the agent becomes `status` (`OFFLINE`), unless a newer stream
    /// replaced this one or the agent was deregistered (then nothing changes).
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

    /// Deregisters an agent: `TERMINATED`, its stream forgotten, so its heartbeats are refused
    /// and it cannot connect by id again (idempotent). `NotFound` when absent or another
    /// tenant's.
    async fn deregister_agent(&self, tenant: &TenantId, id: AgentId) -> Result<Agent>;

    /// Stores a registration token, valid for `token.ttl` from now (database clock).
    /// `NotFound` when the tenant does not exist; `AlreadyExists` when the id is taken.
    async fn create_registration_token(
        &self,
        token: &NewRegistrationToken,
    ) -> Result<RegistrationToken>;

    /// The tenant's registration tokens, newest first, used, expired and revoked ones
    /// included (an audit trail).
    async fn list_registration_tokens(&self, tenant: &TenantId) -> Result<Vec<RegistrationToken>>;

    /// Revokes a registration token (idempotent: the first revocation's time is kept);
    /// `NotFound` when absent or another tenant's.
    async fn revoke_registration_token(
        &self,
        tenant: &TenantId,
        id: RegistrationTokenId,
    ) -> Result<RegistrationToken>;

    /// Exchanges a registration token for a new agent, in one transaction: of concurrent
    /// enrollments with one token, exactly one succeeds. The token must exist with
    /// `enrollment.digest`, be neither revoked nor used, and not have expired (database clock);
    /// else `Unauthenticated`. The agent joins the token's tenant and pool, named
    /// `enrollment.name`, `OFFLINE`, with no capacity, no version and no stream; the token is
    /// marked used by it. `AlreadyExists`, leaving the token unused, when the tenant has an
    /// agent of that name that is not `TERMINATED`; a `TERMINATED` one is replaced (the new
    /// agent gets a new id). Returns the token as updated, and the agent.
    async fn enroll_agent(&self, enrollment: &Enrollment) -> Result<(RegistrationToken, Agent)>;
}

/// The answers of a batched heartbeat in the order of `beats`: the drain flag of each stream
/// the update matched (`rows`: agent, stream, draining), `None` for the rest.
pub(crate) fn in_order(
    beats: &[StreamBeat],
    rows: Vec<(AgentId, Uuid, bool)>,
) -> Vec<Option<bool>> {
    let found: std::collections::HashMap<(AgentId, Uuid), bool> = rows
        .into_iter()
        .map(|(id, session, draining)| ((id, session), draining))
        .collect();
    beats
        .iter()
        .map(|b| found.get(&(b.id, b.session)).copied())
        .collect()
}

/// The agent a conditional update of a live agent returned (`row`), or why there was none.
pub(crate) async fn updated_or_why<R>(
    store: &dyn AgentStore,
    tenant: &TenantId,
    id: AgentId,
    row: Option<R>,
) -> Result<Agent>
where
    R: TryInto<Agent, Error = switchyard_types::Error>,
{
    match row {
        Some(row) => row.try_into(),
        None => Err(crate::identity_rows::not_live(
            store.agent(tenant, id).await,
        )),
    }
}
