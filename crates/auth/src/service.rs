//! Identity operations: log-in, refresh rotation, log-out, token validation, API keys, and the
//! administration of tenants, users and roles. Transport-free: the gRPC and REST edges convert
//! and call these. Every operation on a named object is scoped by the caller's tenant; only a
//! platform administrator (the `admin` scope in the `default` tenant) reaches other tenants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use switchyard_store::IdentityStore;
use switchyard_types::{
    ApiKey, ApiKeyId, Error, ErrorKind, NewApiKey, NewRefreshToken, NewUser, Principal,
    PrincipalKind, Result, Role, Rotation, ScopeSet, Tenant, TenantId, User, validate_name,
};
use uuid::Uuid;

use crate::jwt::TokenIssuer;
use crate::limits::LoginLimiter;
use crate::password::{hash_password, validate_password, verify_dummy, verify_password};
use crate::secret::{
    Secret, digest, digests_match, is_api_key, new_api_key, new_refresh_token, parse_api_key,
};

/// The default time a rotated refresh token still rotates (a concurrent refresh from another
/// tab or a retried request) before presenting it counts as theft and revokes its family.
pub const REFRESH_GRACE: Duration = Duration::from_secs(10);

/// The limiter's stand-in email for failed refreshes: they count per client address.
const REFRESH: &str = "(refresh)";

/// How long an API key looked up from the store is trusted by this replica. Revocation takes
/// effect at once on the replica that revoked it, and within this time on the others.
pub const API_KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Settings of the identity service.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// How long refresh tokens live (`JWT_REFRESH_TTL_SECONDS`).
    pub refresh_ttl: Duration,
    /// How long a rotated refresh token may still be presented without revoking its family.
    pub refresh_grace: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            refresh_ttl: Duration::from_secs(604_800),
            refresh_grace: REFRESH_GRACE,
        }
    }
}

/// A fresh pair of tokens, as log-in and refresh answer.
#[derive(Debug, Clone)]
pub struct Session {
    /// The access JWT.
    pub access_token: Secret,
    /// The opaque refresh token (shown once; rotated on every use).
    pub refresh_token: Secret,
    /// Seconds until the access token expires.
    pub expires_in: Duration,
}

/// A new API key: the record and the key itself, shown once.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// What is stored (and listed).
    pub key: ApiKey,
    /// The key to give the CI system; never retrievable again.
    pub secret: Secret,
}

/// A request to create a user.
#[derive(Debug, Clone)]
pub struct UserSpec {
    /// The tenant; the caller's own when `None`.
    pub tenant: Option<TenantId>,
    /// The email (log-in name).
    pub email: String,
    /// The password.
    pub password: Secret,
    /// The role's name.
    pub role: String,
}

/// The identity service.
#[derive(Clone)]
pub struct Identity {
    store: Arc<dyn IdentityStore>,
    tokens: Arc<TokenIssuer>,
    limiter: LoginLimiter,
    config: IdentityConfig,
    keys: Arc<Mutex<HashMap<ApiKeyId, CachedKey>>>,
}

/// An API key as this replica last read it from the store.
#[derive(Clone)]
struct CachedKey {
    key: ApiKey,
    secret_hash: [u8; 32],
    fetched: Instant,
}

impl CachedKey {
    fn is_fresh(&self) -> bool {
        self.fetched.elapsed() < API_KEY_CACHE_TTL
    }
}

fn unauthenticated() -> Error {
    Error::new(ErrorKind::Unauthenticated, "invalid or expired credentials")
}

/// Lower-cases and checks an email: one `@`, something on both sides, at most 254 bytes.
pub fn normalize_email(field: &str, email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(Error::invalid(field, "must be an email address"))
    }
}

impl Identity {
    /// The service over `store`, signing with `tokens`, limiting log-ins with `limiter`.
    pub fn new(
        store: Arc<dyn IdentityStore>,
        tokens: Arc<TokenIssuer>,
        limiter: LoginLimiter,
        config: IdentityConfig,
    ) -> Self {
        Identity {
            store,
            tokens,
            limiter,
            config,
            keys: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The token issuer (to verify access tokens).
    pub fn tokens(&self) -> &TokenIssuer {
        &self.tokens
    }

    /// Logs in with email and password from `client` (the caller's address, for the limiter).
    /// Unknown email, wrong password and disabled user look the same: `Unauthenticated`, after
    /// the same argon2 work.
    pub async fn login(&self, email: &str, password: &Secret, client: &str) -> Result<Session> {
        let email = email.trim().to_lowercase();
        self.limiter.check(client, &email).await?;
        let found = self.store.user_by_email(&email).await?;
        let password = password.clone();
        let (found, ok) = tokio::task::spawn_blocking(move || match found {
            Some(creds) => {
                let ok = verify_password(password.expose(), &creds.password_hash);
                (Some(creds), ok)
            }
            None => {
                verify_dummy(password.expose());
                (None, false)
            }
        })
        .await
        .map_err(|e| Error::internal(format!("password check panicked: {e}")))?;
        let user = match found {
            Some(creds) if ok && !creds.user.disabled => creds.user,
            _ => {
                self.limiter.failed(client, &email).await;
                tracing::info!(client, "log-in failed");
                return Err(unauthenticated());
            }
        };
        let family = Uuid::now_v7();
        let (refresh, record) = self.new_refresh(family, &user);
        self.store.insert_refresh_token(&record).await?;
        let session = self.session(&user, refresh).await?;
        tracing::info!(user = %user.id, tenant = %user.tenant, "logged in");
        Ok(session)
    }

    fn new_refresh(&self, family: Uuid, user: &User) -> (Secret, NewRefreshToken) {
        let token = new_refresh_token();
        let ttl = chrono::Duration::from_std(self.config.refresh_ttl)
            .unwrap_or(chrono::Duration::days(7));
        let record = NewRefreshToken {
            hash: digest(token.expose()),
            family,
            user: user.id,
            tenant: user.tenant.clone(),
            expires_at: Utc::now() + ttl,
        };
        (token, record)
    }

    async fn session(&self, user: &User, refresh: Secret) -> Result<Session> {
        let scopes = self.role_scopes(&user.tenant, &user.role).await?;
        let issued = self.tokens.issue(
            &user.id.to_string(),
            &user.tenant,
            scopes,
            PrincipalKind::User,
        )?;
        Ok(Session {
            access_token: Secret::new(issued.token),
            refresh_token: refresh,
            expires_in: issued.expires_in,
        })
    }

    /// The scopes of role `name` in `tenant` (a custom role, else a built-in one). A role that
    /// no longer exists grants nothing.
    async fn role_scopes(&self, tenant: &TenantId, name: &str) -> Result<ScopeSet> {
        if let Some(role) = Role::builtin_named(name) {
            return Ok(role.scopes);
        }
        Ok(self
            .store
            .role(tenant, name)
            .await?
            .map_or(ScopeSet::EMPTY, |r| r.scopes))
    }

    /// Trades a refresh token for a new pair. The presented token is rotated; presenting a
    /// rotated token again (after the grace, [`REFRESH_GRACE`] by default) revokes every token
    /// of its log-in. Failed refreshes from `client` are limited like failed log-ins.
    pub async fn refresh(&self, refresh_token: &Secret, client: &str) -> Result<Session> {
        self.limiter.check(client, REFRESH).await?;
        let presented = digest(refresh_token.expose());
        let next = new_refresh_token();
        let ttl = chrono::Duration::from_std(self.config.refresh_ttl)
            .unwrap_or(chrono::Duration::days(7));
        // The family, user and tenant of the new token are the presented one's: the store
        // fills them in.
        let record = NewRefreshToken {
            hash: digest(next.expose()),
            family: Uuid::nil(),
            user: Uuid::nil(),
            tenant: TenantId::default_tenant(),
            expires_at: Utc::now() + ttl,
        };
        match self
            .store
            .rotate_refresh_token(&presented, &record, self.config.refresh_grace)
            .await?
        {
            Rotation::Rotated { user, tenant } => {
                let user = self.store.user(&tenant, user).await?;
                self.session(&user, next).await
            }
            Rotation::Reused => {
                tracing::warn!(
                    "a rotated refresh token was presented again; its family is revoked"
                );
                self.limiter.failed(client, REFRESH).await;
                Err(unauthenticated())
            }
            Rotation::Invalid => {
                self.limiter.failed(client, REFRESH).await;
                Err(unauthenticated())
            }
        }
    }

    /// Revokes the log-in the refresh token belongs to. Unknown tokens are not an error (a
    /// log-out is idempotent).
    pub async fn logout(&self, refresh_token: &Secret) -> Result<()> {
        self.store
            .revoke_refresh_family(&digest(refresh_token.expose()))
            .await?;
        Ok(())
    }

    /// The principal a bearer credential (access JWT or API key) stands for.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        if is_api_key(bearer) {
            self.authenticate_key(bearer).await
        } else {
            self.tokens.verify(bearer)
        }
    }

    async fn authenticate_key(&self, bearer: &str) -> Result<Principal> {
        let (id, secret_digest) = parse_api_key(bearer).ok_or_else(unauthenticated)?;
        let cached = {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.get(&id).filter(|c| c.is_fresh()).cloned()
        };
        let CachedKey {
            key, secret_hash, ..
        } = match cached {
            Some(found) => found,
            None => {
                let creds = self.store.api_key(id).await?.ok_or_else(unauthenticated)?;
                let fresh = CachedKey {
                    key: creds.key,
                    secret_hash: creds.secret_hash,
                    fetched: Instant::now(),
                };
                let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                keys.retain(|_, c| c.is_fresh());
                keys.insert(id, fresh.clone());
                fresh
            }
        };
        if !digests_match(&secret_hash, &secret_digest) || !key.is_live(Utc::now()) {
            return Err(unauthenticated());
        }
        Ok(Principal {
            tenant: key.tenant,
            subject: format!("key:{}", key.id),
            scopes: key.scopes,
            kind: PrincipalKind::ApiKey,
        })
    }

    /// Creates an API key for the caller's tenant. Its scopes must be within the caller's.
    pub async fn create_api_key(
        &self,
        who: &Principal,
        name: &str,
        scopes: ScopeSet,
        ttl: Option<Duration>,
    ) -> Result<CreatedApiKey> {
        validate_name("name", name)?;
        if scopes.is_empty() {
            return Err(Error::invalid("scopes", "must name at least one scope"));
        }
        if !who.scopes.covers(scopes) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "a key cannot hold scopes its creator lacks",
            ));
        }
        let expires_at = ttl
            .map(|t| {
                chrono::Duration::from_std(t)
                    .map(|d| Utc::now() + d)
                    .map_err(|_| Error::invalid("ttl_seconds", "is too large"))
            })
            .transpose()?;
        let id = Uuid::now_v7();
        let (secret, secret_hash) = new_api_key(id);
        let key = self
            .store
            .create_api_key(NewApiKey {
                id,
                tenant: who.tenant.clone(),
                name: name.to_owned(),
                scopes,
                created_by: who.subject.clone(),
                expires_at,
                secret_hash,
            })
            .await?;
        tracing::info!(key = %key.id, tenant = %key.tenant, by = %who.subject, "API key created");
        Ok(CreatedApiKey { key, secret })
    }

    /// The caller's tenant's API keys, newest first.
    pub async fn list_api_keys(&self, who: &Principal) -> Result<Vec<ApiKey>> {
        self.store.list_api_keys(&who.tenant).await
    }

    /// Revokes one of the caller's tenant's API keys; this replica stops accepting it at once.
    pub async fn revoke_api_key(&self, who: &Principal, id: ApiKeyId) -> Result<ApiKey> {
        let key = self.store.revoke_api_key(&who.tenant, id).await?;
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        tracing::info!(key = %id, by = %who.subject, "API key revoked");
        Ok(key)
    }

    /// Creates a tenant (platform administrators only).
    pub async fn create_tenant(
        &self,
        who: &Principal,
        id: &TenantId,
        name: &str,
    ) -> Result<Tenant> {
        who.require_platform_admin("manage tenants")?;
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::invalid("name", "must be 1-200 characters"));
        }
        self.store.create_tenant(id, name).await
    }

    /// Every tenant for a platform administrator; the caller's own otherwise.
    pub async fn list_tenants(&self, who: &Principal) -> Result<Vec<Tenant>> {
        if who.is_platform_admin() {
            self.store.list_tenants().await
        } else {
            Ok(vec![self.store.tenant(&who.tenant).await?])
        }
    }

    /// The tenant `who` may act on: its own, or any for a platform administrator. Another
    /// tenant is `NotFound`, as if it did not exist.
    fn target_tenant(who: &Principal, tenant: Option<TenantId>) -> Result<TenantId> {
        match tenant {
            None => Ok(who.tenant.clone()),
            Some(t) if t == who.tenant || who.is_platform_admin() => Ok(t),
            Some(t) => Err(Error::not_found(format!("tenant {t}"))),
        }
    }

    /// Creates a user in the caller's tenant (or any, for a platform administrator).
    pub async fn create_user(&self, who: &Principal, spec: UserSpec) -> Result<User> {
        let tenant = Self::target_tenant(who, spec.tenant)?;
        let email = normalize_email("email", &spec.email)?;
        validate_password("password", spec.password.expose())?;
        validate_name("role", &spec.role)?;
        if Role::builtin_named(&spec.role).is_none()
            && self.store.role(&tenant, &spec.role).await?.is_none()
        {
            return Err(Error::invalid("role", "no such role in this tenant"));
        }
        let password = spec.password;
        let password_hash = tokio::task::spawn_blocking(move || hash_password(password.expose()))
            .await
            .map_err(|e| Error::internal(format!("password hashing panicked: {e}")))??;
        let user = self
            .store
            .create_user(NewUser {
                tenant,
                email,
                password_hash,
                role: spec.role,
            })
            .await?;
        tracing::info!(user = %user.id, tenant = %user.tenant, by = %who.subject, "user created");
        Ok(user)
    }

    /// The caller's tenant's users.
    pub async fn list_users(&self, who: &Principal) -> Result<Vec<User>> {
        self.store.list_users(&who.tenant).await
    }

    /// Defines a custom role in the caller's tenant. Built-in names are refused.
    pub async fn put_role(&self, who: &Principal, name: &str, scopes: ScopeSet) -> Result<Role> {
        validate_name("name", name)?;
        if Role::builtin_named(name).is_some() {
            return Err(Error::invalid("name", "is a built-in role"));
        }
        self.store
            .put_role(
                &who.tenant,
                &Role {
                    name: name.to_owned(),
                    scopes,
                    builtin: false,
                },
            )
            .await
    }

    /// The roles of the caller's tenant: built-in, then custom.
    pub async fn list_roles(&self, who: &Principal) -> Result<Vec<Role>> {
        let mut roles = Role::builtin();
        roles.extend(self.store.list_roles(&who.tenant).await?);
        Ok(roles)
    }

    /// Makes sure an administrator with this email exists in the default tenant (start-up
    /// bootstrap). Returns whether it was created; an existing user is left as it is.
    pub async fn ensure_admin(&self, email: &str, password: &Secret) -> Result<bool> {
        let email = normalize_email("SWITCHYARD_ADMIN_EMAIL", email)?;
        if self.store.user_by_email(&email).await?.is_some() {
            return Ok(false);
        }
        let who = Principal {
            subject: "bootstrap".to_owned(),
            ..Principal::dev()
        };
        let created = self
            .create_user(
                &who,
                UserSpec {
                    tenant: None,
                    email,
                    password: password.clone(),
                    role: "admin".to_owned(),
                },
            )
            .await;
        match created {
            Ok(_) => Ok(true),
            // Another replica created it at the same moment.
            Err(e) if e.kind == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }
}
