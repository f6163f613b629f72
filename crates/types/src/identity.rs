//! Identity records: tenants, users, roles, refresh tokens and API keys (DESIGN §3.8). Secrets
//! never appear here in clear: passwords as argon2 PHC strings, tokens and keys as SHA-256
//! digests.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Error, Scope, ScopeSet, TenantId};

/// A tenant: an organisation that owns users, keys, agents and jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id (also its slug in URLs and SPIFFE ids).
    pub id: TenantId,
    /// A display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A user's id.
pub type UserId = Uuid;

/// A user who logs in with email and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id (the `sub` of its access tokens).
    pub id: UserId,
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// Its email, lower-cased; unique across the installation (log-in names no tenant).
    pub email: String,
    /// The name of its role, which gives its scopes.
    pub role: String,
    /// Disabled users cannot log in or refresh.
    pub disabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The tenant it belongs to (must exist).
    pub tenant: TenantId,
    /// Its email, lower-cased.
    pub email: String,
    /// The argon2 PHC string of its password.
    pub password_hash: String,
    /// Its role's name (built-in or defined for the tenant).
    pub role: String,
}

/// A user with its password hash, as log-in needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    /// The user.
    pub user: User,
    /// The argon2 PHC string of its password.
    pub password_hash: String,
}

/// A named set of scopes. Built-in roles exist in every tenant; a tenant may define more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Its name: 1–64 characters of `[a-z0-9_-]`.
    pub name: String,
    /// The scopes it grants.
    pub scopes: ScopeSet,
    /// Whether it is built in (and cannot be redefined).
    pub builtin: bool,
}

impl Role {
    /// The built-in roles: `admin` (everything), `operator` (every scope but `admin`),
    /// `developer` (jobs, deployments without promote, ingest, read agents) and `viewer`
    /// (every `:read` scope).
    pub fn builtin() -> Vec<Role> {
        use Scope::*;
        let role = |name: &str, scopes: &[Scope]| Role {
            name: name.to_owned(),
            scopes: ScopeSet::of(scopes),
            builtin: true,
        };
        vec![
            role("admin", &[Admin]),
            role(
                "operator",
                &[
                    JobsRead,
                    JobsWrite,
                    AgentsRead,
                    AgentsAdmin,
                    DeploymentsRead,
                    DeploymentsWrite,
                    DeploymentsPromote,
                    IngestWrite,
                ],
            ),
            role(
                "developer",
                &[
                    JobsRead,
                    JobsWrite,
                    AgentsRead,
                    DeploymentsRead,
                    DeploymentsWrite,
                    IngestWrite,
                ],
            ),
            role("viewer", &[JobsRead, AgentsRead, DeploymentsRead]),
        ]
    }

    /// The built-in role called `name`, if any.
    pub fn builtin_named(name: &str) -> Option<Role> {
        Role::builtin().into_iter().find(|r| r.name == name)
    }
}

/// Validates a role or API key name: 1–64 characters of `[a-z0-9_-]`.
pub fn validate_name(field: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be 1-64 characters of [a-z0-9_-]",
        ))
    }
}

/// A refresh token to store. The token itself is only ever held by the client; the store keeps
/// its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// The family: every token rotated from one log-in shares it; reuse revokes it whole.
    pub family: Uuid,
    /// The user it refreshes.
    pub user: UserId,
    /// The user's tenant.
    pub tenant: TenantId,
    /// When it stops working, whatever happens.
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current (or rotated within the grace period, by a concurrent refresh):
    /// it is now rotated and the new token is stored in its family.
    Rotated {
        /// The user to issue an access token for.
        user: UserId,
        /// The user's tenant.
        tenant: TenantId,
    },
    /// The token had been rotated before the grace period: its whole family is now revoked.
    Reused,
    /// Unknown, expired or revoked: nothing changed.
    Invalid,
}

/// An API key's id: the public part of the key, shown in lists.
pub type ApiKeyId = Uuid;

/// An API key for a CI system. The secret is shown once, at creation; the store keeps its
/// SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id, also embedded in the key.
    pub id: ApiKeyId,
    /// The tenant it acts in.
    pub tenant: TenantId,
    /// A name chosen by its creator, unique among the tenant's live keys.
    pub name: String,
    /// The scopes it grants.
    pub scopes: ScopeSet,
    /// Who created it (a principal subject).
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether it authenticates at `now`: not revoked, not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// An API key to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// Its id, also embedded in the key.
    pub id: ApiKeyId,
    /// The tenant it acts in.
    pub tenant: TenantId,
    /// Its name.
    pub name: String,
    /// The scopes it grants.
    pub scopes: ScopeSet,
    /// Who created it.
    pub created_by: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// SHA-256 of the key's secret part.
    pub secret_hash: [u8; 32],
}

/// An API key with the digest of its secret, as authentication needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCredentials {
    /// The key.
    pub key: ApiKey,
    /// SHA-256 of its secret part.
    pub secret_hash: [u8; 32],
}
