//! The identity store: tenants, users, roles, refresh tokens and API keys (DESIGN §3.8). Every
//! operation a client can name is scoped by tenant; the two look-ups by credential
//! ([`IdentityStore::user_by_email`], [`IdentityStore::api_key`]) are not, because the
//! credential is what tells the tenant.

use std::time::Duration;

use async_trait::async_trait;
use switchyard_types::{
    ApiKey, ApiKeyCredentials, ApiKeyId, NewApiKey, NewRefreshToken, NewUser, Result, Role,
    Rotation, Tenant, TenantId, User, UserCredentials, UserId,
};

/// Storage of identities. Secrets are stored only as digests (SHA-256 for random tokens and
/// keys) or argon2 PHC strings (passwords); this trait never sees one in clear.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// Creates a tenant. `AlreadyExists` when the id is taken.
    async fn create_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant>;

    /// One tenant; `NotFound` when absent.
    async fn tenant(&self, id: &TenantId) -> Result<Tenant>;

    /// Every tenant, by id.
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;

    /// Defines (or redefines) a custom role of `tenant`. `NotFound` when the tenant does not
    /// exist. The caller refuses built-in names.
    async fn put_role(&self, tenant: &TenantId, role: &Role) -> Result<Role>;

    /// The tenant's custom role called `name`, if any (built-in roles are not stored).
    async fn role(&self, tenant: &TenantId, name: &str) -> Result<Option<Role>>;

    /// The tenant's custom roles, by name.
    async fn list_roles(&self, tenant: &TenantId) -> Result<Vec<Role>>;

    /// Creates a user. `AlreadyExists` when the email is taken (in any tenant); `NotFound`
    /// when the tenant does not exist.
    async fn create_user(&self, user: NewUser) -> Result<User>;

    /// The user with this (lower-cased) email, with its password hash, in any tenant.
    async fn user_by_email(&self, email: &str) -> Result<Option<UserCredentials>>;

    /// One user of `tenant`; `NotFound` when absent or another tenant's.
    async fn user(&self, tenant: &TenantId, id: UserId) -> Result<User>;

    /// The tenant's users, by email.
    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<User>>;

    /// Replaces a user's password hash; `NotFound` when absent or another tenant's.
    async fn set_password(&self, tenant: &TenantId, id: UserId, password_hash: &str) -> Result<()>;

    /// Stores a refresh token (the first of a family, at log-in).
    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<()>;

    /// Presents the token whose digest is `presented`, atomically:
    /// - unknown, expired, revoked, or of a revoked family or a disabled user: `Invalid`;
    /// - current, or rotated less than `grace` ago (a concurrent refresh): marks it rotated,
    ///   stores `next` in its family (`next.family`, `next.user` and `next.tenant` are
    ///   ignored: the presented token's are kept), and answers `Rotated`;
    /// - rotated longer than `grace` ago (a replay): revokes the whole family, `Reused`.
    async fn rotate_refresh_token(
        &self,
        presented: &[u8; 32],
        next: &NewRefreshToken,
        grace: Duration,
    ) -> Result<Rotation>;

    /// Revokes the family of the token whose digest is `presented` (log-out). Whether a live
    /// family was found.
    async fn revoke_refresh_family(&self, presented: &[u8; 32]) -> Result<bool>;

    /// Stores an API key. `AlreadyExists` when the tenant has a live key of that name;
    /// `NotFound` when the tenant does not exist.
    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey>;

    /// The key with this id, in any tenant, revoked or not, with its secret's digest.
    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyCredentials>>;

    /// The tenant's keys, newest first, revoked ones included.
    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>>;

    /// Revokes a key (idempotent: revoking a revoked key returns it unchanged); `NotFound`
    /// when absent or another tenant's.
    async fn revoke_api_key(&self, tenant: &TenantId, id: ApiKeyId) -> Result<ApiKey>;
}
