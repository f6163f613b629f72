//! What the identity and agent adapters share: the column lists, the rows whose types do not
//! depend on the database, the decoding of stored values, and the decisions both adapters take
//! on what they read (presenting a registration token, refusing an enrolled agent's connect).

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use switchyard_types::{
    Agent, AgentId, AgentStatus, Error, ErrorKind, PoolSettings, RegistrationToken, Result, Role,
    ScopeSet, TenantId,
};
use uuid::Uuid;

use crate::error::from_sqlx;

/// The columns of a user row (everything but the password hash).
macro_rules! user_columns {
    () => {
        "id, tenant_id, email, role, disabled, created_at"
    };
}

/// The columns of an API key row (everything but the secret's digest).
macro_rules! key_columns {
    () => {
        "id, tenant_id, name, scopes, created_by, created_at, expires_at, revoked_at"
    };
}

/// The columns of a registration token row (everything but the secret's digest).
macro_rules! token_columns {
    () => {
        "id, tenant_id, pool, created_by, created_at, expires_at, used_at, agent_id, revoked_at"
    };
}

/// A failed write whose foreign key names a missing row is `NotFound` for `what`; anything
/// else is translated as usual.
pub(crate) fn missing(what: String) -> impl FnOnce(sqlx::Error) -> Error {
    move |err| {
        if let sqlx::Error::Database(db) = &err
            && db.is_foreign_key_violation()
        {
            return Error::not_found(what);
        }
        from_sqlx(err)
    }
}

/// A stored value that cannot be decoded: corruption, never the client's mistake.
pub(crate) fn corrupt(what: &str) -> Error {
    Error::internal(format!("corrupt {what} in a stored row"))
}

/// A stored SQLite instant (milliseconds since the Unix epoch).
pub(crate) fn at(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(|| corrupt("instant"))
}

/// A stored SQLite UUID (text).
pub(crate) fn uuid(stored: &str) -> Result<Uuid> {
    Uuid::parse_str(stored).map_err(|_| corrupt("id"))
}

/// Parses stored scope names; an unknown one is corruption, not a client mistake.
pub(crate) fn scopes(stored: &str, owner: &str) -> Result<ScopeSet> {
    ScopeSet::parse("scopes", stored.split_whitespace())
        .map_err(|_| Error::internal(format!("unknown scope stored for {owner}")))
}

/// Parses a stored tenant id.
pub(crate) fn tenant_id(stored: &str) -> Result<TenantId> {
    TenantId::parse(stored).map_err(|_| corrupt("tenant id"))
}

/// A stored SHA-256 digest.
pub(crate) fn digest(stored: &[u8]) -> Result<[u8; 32]> {
    stored.try_into().map_err(|_| corrupt("digest"))
}

/// A user row (of either adapter's types) with its password hash.
#[derive(FromRow)]
pub(crate) struct CredentialsRow<U> {
    #[sqlx(flatten)]
    pub user: U,
    pub password_hash: String,
}

/// An API key row (of either adapter's types) with its secret's digest.
#[derive(FromRow)]
pub(crate) struct KeyCredentialsRow<K> {
    #[sqlx(flatten)]
    pub key: K,
    pub secret_hash: Vec<u8>,
}

/// A registration token row (of either adapter's types) as presented for an enrollment: with
/// its secret's digest, and whether it has expired by the database clock.
#[derive(FromRow)]
pub(crate) struct PresentedTokenRow<T> {
    #[sqlx(flatten)]
    pub token: T,
    pub digest: Vec<u8>,
    pub expired: bool,
}

/// The token a registration token's row (`None` when its id is unknown) allows to enroll an
/// agent with a secret whose digest is `presented`; `Unauthenticated` when it allows none.
pub(crate) fn presented_token<T>(
    row: Option<PresentedTokenRow<T>>,
    presented: &[u8; 32],
) -> Result<RegistrationToken>
where
    T: TryInto<RegistrationToken, Error = Error>,
{
    let refused = |why: &str| {
        Error::new(
            ErrorKind::Unauthenticated,
            format!("the registration token {why}"),
        )
    };
    let Some(row) = row else {
        return Err(refused("is not valid"));
    };
    // Constant time: how much of a digest matched never shows in the response time.
    let stored = digest(&row.digest)?;
    let difference = stored
        .iter()
        .zip(presented)
        .fold(0, |acc, (a, b)| acc | (a ^ b));
    if difference != 0 {
        return Err(refused("is not valid"));
    }
    let token: RegistrationToken = row.token.try_into()?;
    if token.revoked_at.is_some() {
        Err(refused("was revoked"))
    } else if token.used_at.is_some() {
        Err(refused("was already used"))
    } else if row.expired {
        Err(refused("expired"))
    } else {
        Ok(token)
    }
}

/// An enrollment under `name`, which a live (not `TERMINATED`) agent of the tenant holds.
pub(crate) fn name_taken(name: &str) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!("an agent named {name} exists already"),
    )
}

/// Why enrolled agent `id` may not connect to `pool`, from its row (`found`) read after the
/// conditional update missed it.
pub(crate) fn connect_refused(id: AgentId, pool: &str, found: Result<Agent>) -> Error {
    match found {
        Err(err) => err,
        Ok(agent) if agent.status == AgentStatus::Terminated => Error::new(
            ErrorKind::PermissionDenied,
            format!("agent {id} was deregistered"),
        ),
        Ok(agent) if agent.pool != pool => Error::new(
            ErrorKind::PermissionDenied,
            format!("agent {id} is not enrolled in pool {pool}"),
        ),
        // It changed between the update and the read (deregistered and revived by name, say).
        Ok(_) => Error::unavailable(format!("agent {id} changed while connecting; retry")),
    }
}

/// Why a token-authenticated agent may not connect as `name`: an enrolled agent holds it.
pub(crate) fn enrolled_by_name(name: &str) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!("agent {name} is enrolled: it connects only with its client certificate"),
    )
}

/// Why agent `id` could not be changed by a conditional update that skips deregistered agents,
/// from its row (`found`) read afterwards.
pub(crate) fn not_live(found: Result<Agent>) -> Error {
    match found {
        Err(err) => err,
        Ok(agent) if agent.status == AgentStatus::Terminated => Error::new(
            ErrorKind::Conflict,
            format!("agent {} was deregistered", agent.id),
        ),
        Ok(agent) => Error::unavailable(format!("agent {} changed meanwhile; retry", agent.id)),
    }
}

/// A pool's settings, as both databases return them (counts as 64-bit integers).
#[derive(FromRow)]
pub(crate) struct PoolRow {
    name: String,
    min_agents: i64,
    max_agents: i64,
    target_agents: Option<i64>,
}

impl TryFrom<PoolRow> for PoolSettings {
    type Error = Error;

    fn try_from(r: PoolRow) -> Result<PoolSettings> {
        let count = |n: i64| u32::try_from(n).map_err(|_| corrupt("pool agent count"));
        Ok(PoolSettings {
            pool: r.name,
            min_agents: count(r.min_agents)?,
            max_agents: count(r.max_agents)?,
            target_agents: r.target_agents.map(count).transpose()?,
        })
    }
}

/// A custom role.
#[derive(FromRow)]
pub(crate) struct RoleRow {
    name: String,
    scopes: String,
}

impl TryFrom<RoleRow> for Role {
    type Error = Error;

    fn try_from(r: RoleRow) -> Result<Role> {
        Ok(Role {
            scopes: scopes(&r.scopes, &format!("role {}", r.name))?,
            name: r.name,
            builtin: false,
        })
    }
}
