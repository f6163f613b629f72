//! Wire types of the identity routes (`/auth/*`, `/api/admin/*`). Secrets travel only in
//! requests and in the one response that mints them; no view carries a hash.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_auth::Session;
use switchyard_types::{ApiKey, Principal, Role, ScopeSet, Tenant, User};
use utoipa::ToSchema;

use crate::envelope::ApiError;

/// `POST /auth/session`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The user's email (case-insensitive).
    #[schema(example = "admin@example.com")]
    pub email: String,
    /// The user's password.
    pub password: String,
}

/// `POST /auth/refresh` and `POST /auth/logout`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// A refresh token from log-in or the previous refresh.
    pub refresh_token: String,
}

/// `POST /auth/validate`: the token in the body, or (with `{}`) the request's bearer.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// An access token or API key; default: the `authorization` header's bearer.
    pub token: Option<String>,
}

/// A new access token and refresh token.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// The access JWT: send it as `authorization: Bearer <access_token>`.
    pub access_token: String,
    /// The single-use refresh token.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until `access_token` expires.
    #[schema(example = 900)]
    pub expires_in: u64,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        SessionView {
            access_token: s.access_token.expose().to_owned(),
            refresh_token: s.refresh_token.expose().to_owned(),
            token_type: "Bearer",
            expires_in: s.expires_in.as_secs(),
        }
    }
}

/// Whom a credential stands for.
#[derive(Serialize, ToSchema)]
pub struct PrincipalView {
    /// The user id, or `key:<id>` for an API key.
    pub subject: String,
    /// The tenant it acts in.
    pub tenant: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// `USER`, `API_KEY`, `AGENT` or `DEV`.
    pub kind: &'static str,
}

impl From<Principal> for PrincipalView {
    fn from(p: Principal) -> Self {
        PrincipalView {
            subject: p.subject,
            tenant: p.tenant.to_string(),
            scopes: p.scopes.names(),
            kind: p.kind.as_str(),
        }
    }
}

/// Parses scope names; an unknown one is `400` on `scopes`.
pub fn scopes(names: &[String]) -> Result<ScopeSet, ApiError> {
    Ok(ScopeSet::parse("scopes", names.iter().map(String::as_str))?)
}

/// `POST /auth/api-keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyBody {
    /// 1-64 characters of `[a-z0-9_-]`, unique among the tenant's live keys.
    #[schema(example = "ci-main")]
    pub name: String,
    /// At least one scope, each held by the caller.
    #[schema(example = json!(["jobs:write"]))]
    pub scopes: Vec<String>,
    /// Lifetime in seconds; absent: no expiry.
    pub ttl_seconds: Option<u64>,
}

/// An API key as listed (never the key itself).
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Its id (embedded in the key).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working; absent: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked; absent: live.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        ApiKeyView {
            id: k.id.to_string(),
            name: k.name,
            scopes: k.scopes.names(),
            created_by: k.created_by,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A new API key: the key is shown here and never again.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKeyView {
    /// The key to give the CI system (`sya_…`).
    pub key: String,
    /// Its record.
    pub api_key: ApiKeyView,
}

/// `POST /api/admin/tenants`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    /// 1-64 characters of `[a-z0-9_-]`.
    #[schema(example = "acme")]
    pub id: String,
    /// A display name.
    #[schema(example = "ACME Corp")]
    pub name: String,
}

/// A tenant.
#[derive(Serialize, ToSchema)]
pub struct TenantView {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView {
            id: t.id.to_string(),
            name: t.name,
            created_at: t.created_at,
        }
    }
}

/// `POST /api/admin/users`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// The email (log-in name), unique across the installation.
    pub email: String,
    /// 12 to 1024 bytes.
    pub password: String,
    /// A built-in role (`admin`, `operator`, `developer`, `viewer`) or one of the tenant's.
    #[schema(example = "developer")]
    pub role: String,
    /// The tenant; default the caller's. Only platform administrators may name another.
    pub tenant: Option<String>,
}

/// A user (never its password).
#[derive(Serialize, ToSchema)]
pub struct UserView {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its email.
    pub email: String,
    /// Its role.
    pub role: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id.to_string(),
            tenant: u.tenant.to_string(),
            email: u.email,
            role: u.role,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// `PUT /api/admin/roles/{name}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    /// The scopes the role grants.
    #[schema(example = json!(["jobs:read", "jobs:write"]))]
    pub scopes: Vec<String>,
}

/// A role.
#[derive(Serialize, ToSchema)]
pub struct RoleView {
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Whether it is built in.
    pub builtin: bool,
}

impl From<Role> for RoleView {
    fn from(r: Role) -> Self {
        RoleView {
            name: r.name,
            scopes: r.scopes.names(),
            builtin: r.builtin,
        }
    }
}
