//! What the identity and agent adapters share: the column lists, the rows whose types do not
//! depend on the database, and the decoding of stored values.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use switchyard_types::{Error, Result, Role, ScopeSet, TenantId};
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
