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
