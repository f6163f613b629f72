//! Agents: the registry record of an agent and its states (DESIGN §3.5).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Labels, TenantId};

/// An agent's id in the registry.
pub type AgentId = Uuid;

upper_enum!(
    /// Where an agent is in its life. `REGISTERING -> HEALTHY <-> DEGRADED | UNHEALTHY`, any of
    /// them `-> OFFLINE` when its stream ends, `TERMINATING` while it drains, `TERMINATED` once
    /// deregistered.
    AgentStatus, "status" {
        /// Connected; its `Hello` is being processed.
        Registering = "REGISTERING" => 0,
        /// Connected and heartbeating.
        Healthy = "HEALTHY" => 1,
        /// Connected, but not taking work while matching work waits.
        Degraded = "DEGRADED" => 2,
        /// Connected, but its heartbeats are late.
        Unhealthy = "UNHEALTHY" => 3,
        /// Not connected.
        Offline = "OFFLINE" => 4,
        /// Draining: takes no new work.
        Terminating = "TERMINATING" => 5,
        /// Deregistered.
        Terminated = "TERMINATED" => 6,
    }
);

/// An agent in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The registry id.
    pub id: AgentId,
    /// The owning tenant.
    pub tenant: TenantId,
    /// Unique within the tenant; kept across restarts and reconnects.
    pub name: String,
    /// The pool it takes work from.
    pub pool: String,
    /// The labels it offers.
    pub labels: Labels,
    /// Its state.
    pub status: AgentStatus,
    /// Whether an operator drains it: it takes no new work (`TERMINATING` while connected).
    pub draining: bool,
    /// Jobs it can run at once.
    pub capacity: u32,
    /// Jobs it held at its last heartbeat.
    pub running: u32,
    /// The version it reported.
    pub version: String,
    /// Its last heartbeat or connect (database clock).
    pub last_heartbeat_at: DateTime<Utc>,
    /// When it first registered.
    pub created_at: DateTime<Utc>,
}

/// An agent announcing itself on a new stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHello {
    /// The tenant it authenticated as.
    pub tenant: TenantId,
    /// The enrolled agent its client certificate names: then `pool` must be its enrolled pool
    /// and `name` is ignored. `None` for an agent authenticated by token, registered by name.
    pub id: Option<AgentId>,
    /// Its name.
    pub name: String,
    /// Its pool.
    pub pool: String,
    /// Its labels.
    pub labels: Labels,
    /// Jobs it can run at once.
    pub capacity: u32,
    /// Its version.
    pub version: String,
    /// This stream's id: the registry remembers the newest stream of each agent, so an older
    /// stream (a half-open connection, or one on another replica) learns it was replaced.
    pub session: Uuid,
}

/// The identity in an agent's client certificate, its URI SAN:
/// `spiffe://switchyard/tenant/<tenant>/pool/<pool>/agent/<agent id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// The tenant the agent belongs to.
    pub tenant: TenantId,
    /// The pool it was enrolled in.
    pub pool: String,
    /// Its registry id.
    pub agent: AgentId,
}

impl SpiffeId {
    /// The trust domain of every Switchyard identity.
    pub const PREFIX: &'static str = "spiffe://switchyard/";
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}tenant/{}/pool/{}/agent/{}",
            Self::PREFIX,
            self.tenant,
            self.pool,
            self.agent.hyphenated()
        )
    }
}

impl FromStr for SpiffeId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("spiffe_id", "is not a Switchyard agent identity");
        let rest = s.strip_prefix(Self::PREFIX).ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let ["tenant", tenant, "pool", pool, "agent", agent] = parts.as_slice() else {
            return Err(bad());
        };
        if !is_pool_name(pool) {
            return Err(bad());
        }
        Ok(SpiffeId {
            tenant: TenantId::parse(tenant).map_err(|_| bad())?,
            pool: (*pool).to_owned(),
            agent: Uuid::try_parse(agent).map_err(|_| bad())?,
        })
    }
}

/// Whether `s` is a valid pool name: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn is_pool_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An agent's client certificate, as handed to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// When the certificate expires.
    pub expires_at: DateTime<Utc>,
    /// The identity it names.
    pub identity: SpiffeId,
}

/// An operator's settings of a pool: bounds for its agent count and, optionally, a pinned
/// target. A pool without settings has the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// The pool.
    pub pool: String,
    /// The fewest agents the pool should have.
    pub min_agents: u32,
    /// The most agents the pool should have.
    pub max_agents: u32,
    /// A pinned agent count; `None` lets the scaling signal follow demand.
    pub target_agents: Option<u32>,
}

impl PoolSettings {
    /// The most agents a pool may ask for.
    pub const MAX_AGENTS: u32 = 10_000;

    /// The settings of a pool nobody configured: 0 to 100 agents, following demand.
    pub fn defaults(pool: &str) -> Self {
        PoolSettings {
            pool: pool.to_owned(),
            min_agents: 0,
            max_agents: 100,
            target_agents: None,
        }
    }
}

/// A change to a pool's settings; what is `None` stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolScale {
    /// New lower bound.
    pub min_agents: Option<u32>,
    /// New upper bound.
    pub max_agents: Option<u32>,
    /// Pin the agent count to this.
    pub target_agents: Option<u32>,
    /// Unpin: let the scaling signal follow demand again.
    pub follow_demand: bool,
}

/// A pool as operators and autoscalers see it: its settings, its agents, its work, and the
/// scaling signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Its settings (the defaults when nobody set any).
    pub settings: PoolSettings,
    /// Registered agents, deregistered ones excepted.
    pub agents: u32,
    /// Agents connected now (`HEALTHY`, `DEGRADED`, `UNHEALTHY` or `TERMINATING`).
    pub connected: u32,
    /// The slots of the connected agents.
    pub capacity: u32,
    /// Jobs the connected agents hold.
    pub running: u32,
    /// Jobs waiting in the pool.
    pub queued: u64,
    /// Age in seconds of the oldest job that is due and waiting; 0 when none.
    pub oldest_wait_seconds: f64,
    /// How many agents the pool should have now: see DESIGN §3.5 and docs/agent-protocol.md.
    pub desired_agents: u32,
}

/// A registration token's id, embedded in the token (`syt_<id>_<secret>`).
pub type RegistrationTokenId = Uuid;

/// A one-time, expiring registration token (DESIGN §3.5): exchanged once, through `Enroll`, for
/// an agent's client certificate in its tenant and pool. Only its secret's digest is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationToken {
    /// Its id.
    pub id: RegistrationTokenId,
    /// The tenant the enrolled agent joins.
    pub tenant: TenantId,
    /// The pool the enrolled agent joins.
    pub pool: String,
    /// Who created it (a principal subject).
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working (unused).
    pub expires_at: DateTime<Utc>,
    /// When it was exchanged, if it was.
    pub used_at: Option<DateTime<Utc>>,
    /// The agent it enrolled, if it was exchanged.
    pub agent_id: Option<AgentId>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A registration token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRegistrationToken {
    /// Its id.
    pub id: RegistrationTokenId,
    /// The tenant the enrolled agent joins.
    pub tenant: TenantId,
    /// The pool the enrolled agent joins.
    pub pool: String,
    /// SHA-256 of the token's secret part.
    pub digest: [u8; 32],
    /// Who creates it.
    pub created_by: String,
    /// How long it stays valid, from now by the database clock.
    pub ttl: std::time::Duration,
}

/// An agent enrolling with a registration token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The token's id.
    pub token: RegistrationTokenId,
    /// SHA-256 of the token's secret part, as presented.
    pub digest: [u8; 32],
    /// The agent's name, unique in the tenant.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_round_trip_and_reject_anything_else() {
        let id = SpiffeId {
            tenant: TenantId::parse("acme").unwrap(),
            pool: "build.x86_64".to_owned(),
            agent: Uuid::nil(),
        };
        let text = id.to_string();
        assert_eq!(
            text,
            "spiffe://switchyard/tenant/acme/pool/build.x86_64/agent/00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(text.parse::<SpiffeId>().unwrap(), id);
        for bad in [
            "spiffe://other/tenant/acme/pool/p/agent/00000000-0000-0000-0000-000000000000",
            "spiffe://switchyard/tenant/acme/pool/p/agent/not-a-uuid",
            "spiffe://switchyard/tenant/ACME/pool/p/agent/00000000-0000-0000-0000-000000000000",
            "spiffe://switchyard/tenant/acme/pool/a b/agent/00000000-0000-0000-0000-000000000000",
            "spiffe://switchyard/tenant/acme/pool/p/agent/00000000-0000-0000-0000-000000000000/x",
            "spiffe://switchyard/tenant/acme/pool//agent/00000000-0000-0000-0000-000000000000",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad}");
        }
    }
}
