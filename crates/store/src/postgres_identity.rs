//! [`IdentityStore`] on PostgreSQL. Every revocation and rotation instant is the server's clock;
//! presenting a refresh token locks its row and its family's (`SELECT … FOR UPDATE`) for the
//! whole decision, so concurrent presentations of one token are serialised.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use switchyard_types::{
    ApiKey, ApiKeyCredentials, ApiKeyId, Error, NewApiKey, NewRefreshToken, NewUser, Result, Role,
    Rotation, Tenant, TenantId, User, UserCredentials, UserId,
};
use uuid::Uuid;

use crate::IdentityStore;
use crate::error::from_sqlx;
use crate::identity_rows::{
    CredentialsRow, KeyCredentialsRow, RoleRow, digest, missing, scopes, tenant_id,
};
use crate::postgres::PgStore;

/// A grace period as whole microseconds.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = Error;

    fn try_from(r: TenantRow) -> Result<Tenant> {
        Ok(Tenant {
            id: tenant_id(&r.id)?,
            name: r.name,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    tenant_id: String,
    email: String,
    role: String,
    disabled: bool,
    created_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = Error;

    fn try_from(r: UserRow) -> Result<User> {
        Ok(User {
            id: r.id,
            tenant: tenant_id(&r.tenant_id)?,
            email: r.email,
            role: r.role,
            disabled: r.disabled,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    tenant_id: String,
    name: String,
    scopes: String,
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = Error;

    fn try_from(r: KeyRow) -> Result<ApiKey> {
        Ok(ApiKey {
            scopes: scopes(&r.scopes, &format!("api key {}", r.id))?,
            id: r.id,
            tenant: tenant_id(&r.tenant_id)?,
            name: r.name,
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
}

/// A presented refresh token with its family and user, as locked for the decision.
#[derive(sqlx::FromRow)]
struct PresentedRow {
    family_id: Uuid,
    expires_at: DateTime<Utc>,
    family_revoked: bool,
    user_id: Uuid,
    tenant_id: String,
    disabled: bool,
    now: DateTime<Utc>,
}

/// Stores a token in `family` (which exists).
async fn insert_token(
    tx: &mut Transaction<'static, Postgres>,
    family: Uuid,
    token: &NewRefreshToken,
) -> Result<()> {
    sqlx::query("INSERT INTO refresh_tokens (hash, family_id, expires_at) VALUES ($1, $2, $3)")
        .bind(token.hash.as_slice())
        .bind(family)
        .bind(token.expires_at)
        .execute(&mut **tx)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

#[async_trait]
impl IdentityStore for PgStore {
    async fn create_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant> {
        let row: TenantRow =
            sqlx::query_as("INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING *")
                .bind(id.as_str())
                .bind(name)
                .fetch_one(self.pool())
                .await
                .map_err(from_sqlx)?;
        row.try_into()
    }

    async fn tenant(&self, id: &TenantId) -> Result<Tenant> {
        let row: Option<TenantRow> = sqlx::query_as("SELECT * FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format_args!("tenant {id}")))?
            .try_into()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows: Vec<TenantRow> = sqlx::query_as("SELECT * FROM tenants ORDER BY id")
            .fetch_all(self.pool())
            .await
            .map_err(from_sqlx)?;
        rows.into_iter().map(Tenant::try_from).collect()
    }

    async fn put_role(&self, tenant: &TenantId, role: &Role) -> Result<Role> {
        let row: RoleRow = sqlx::query_as(
            "INSERT INTO roles (tenant_id, name, scopes) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, name) DO UPDATE SET scopes = excluded.scopes
             RETURNING name, scopes",
        )
        .bind(tenant.as_str())
        .bind(&role.name)
        .bind(role.scopes.to_string())
        .fetch_one(self.pool())
        .await
        .map_err(missing(format!("tenant {tenant}")))?;
        row.try_into()
    }

    async fn role(&self, tenant: &TenantId, name: &str) -> Result<Option<Role>> {
        let row: Option<RoleRow> =
            sqlx::query_as("SELECT name, scopes FROM roles WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(self.pool())
                .await
                .map_err(from_sqlx)?;
        row.map(Role::try_from).transpose()
    }

    async fn list_roles(&self, tenant: &TenantId) -> Result<Vec<Role>> {
        let rows: Vec<RoleRow> =
            sqlx::query_as("SELECT name, scopes FROM roles WHERE tenant_id = $1 ORDER BY name")
                .bind(tenant.as_str())
                .fetch_all(self.pool())
                .await
                .map_err(from_sqlx)?;
        rows.into_iter().map(Role::try_from).collect()
    }

    async fn create_user(&self, user: NewUser) -> Result<User> {
        let row: UserRow = sqlx::query_as(concat!(
            "INSERT INTO users (id, tenant_id, email, password_hash, role)
                 VALUES ($1, $2, $3, $4, $5) RETURNING ",
            user_columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(user.tenant.as_str())
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.role)
        .fetch_one(self.pool())
        .await
        .map_err(missing(format!("tenant {}", user.tenant)))?;
        row.try_into()
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserCredentials>> {
        let row: Option<CredentialsRow<UserRow>> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        row.map(|r| {
            Ok(UserCredentials {
                user: r.user.try_into()?,
                password_hash: r.password_hash,
            })
        })
        .transpose()
    }

    async fn user(&self, tenant: &TenantId, id: UserId) -> Result<User> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format_args!("user {id}")))?
            .try_into()
    }

    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = $1 ORDER BY email"
        ))
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(User::try_from).collect()
    }

    async fn set_password(&self, tenant: &TenantId, id: UserId, password_hash: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $3 WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant.as_str())
                .bind(password_hash)
                .execute(self.pool())
                .await
                .map_err(from_sqlx)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format_args!("user {id}")));
        }
        Ok(())
    }

    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        let created = sqlx::query(
            "INSERT INTO refresh_families (id, user_id, tenant_id) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(token.family)
        .bind(token.user)
        .bind(token.tenant.as_str())
        .execute(&mut *tx)
        .await
        .map_err(missing(format!("user {}", token.user)))?;
        if created.rows_affected() == 0 {
            // The family exists: the token must refresh the same user.
            let owner: (Uuid, String) =
                sqlx::query_as("SELECT user_id, tenant_id FROM refresh_families WHERE id = $1")
                    .bind(token.family)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(from_sqlx)?;
            if owner != (token.user, token.tenant.as_str().to_owned()) {
                return Err(Error::conflict(format!(
                    "refresh family {} belongs to another user",
                    token.family
                )));
            }
        }
        insert_token(&mut tx, token.family, token).await?;
        tx.commit().await.map_err(from_sqlx)
    }

    async fn rotate_refresh_token(
        &self,
        presented: &[u8; 32],
        next: &NewRefreshToken,
        grace: Duration,
    ) -> Result<Rotation> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        // Locks the token and its family: a concurrent presentation (or log-out) of the same
        // family waits here for this decision, then sees its outcome.
        let row: Option<PresentedRow> = sqlx::query_as(
            "SELECT t.family_id, t.expires_at, f.revoked_at IS NOT NULL AS family_revoked,
                    u.id AS user_id, u.tenant_id, u.disabled, now() AS now
             FROM refresh_tokens t
             JOIN refresh_families f ON f.id = t.family_id
             JOIN users u ON u.id = f.user_id
             WHERE t.hash = $1
             FOR UPDATE OF t, f",
        )
        .bind(presented.as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        if row.family_revoked || row.disabled || row.expires_at <= row.now {
            return Ok(Rotation::Invalid);
        }
        // Rotated now, or within `grace` of its first rotation. `clock_timestamp()`, not
        // `now()`: this transaction may have started before the rotation it waited for.
        let rotated = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = COALESCE(rotated_at, now())
             WHERE hash = $1
               AND (rotated_at IS NULL
                    OR rotated_at > clock_timestamp() - $2 * interval '1 microsecond')",
        )
        .bind(presented.as_slice())
        .bind(micros(grace))
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let answer = if rotated.rows_affected() == 1 {
            insert_token(&mut tx, row.family_id, next).await?;
            Rotation::Rotated {
                user: row.user_id,
                tenant: tenant_id(&row.tenant_id)?,
            }
        } else {
            sqlx::query("UPDATE refresh_families SET revoked_at = now() WHERE id = $1")
                .bind(row.family_id)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlx)?;
            tracing::warn!(family = %row.family_id, user = %row.user_id,
                "refresh token reused; family revoked");
            Rotation::Reused
        };
        tx.commit().await.map_err(from_sqlx)?;
        Ok(answer)
    }

    async fn revoke_refresh_family(&self, presented: &[u8; 32]) -> Result<bool> {
        let revoked: Option<Uuid> = sqlx::query_scalar(
            "UPDATE refresh_families SET revoked_at = now()
             WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = $1)
               AND revoked_at IS NULL
             RETURNING id",
        )
        .bind(presented.as_slice())
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(revoked.is_some())
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey> {
        let row: KeyRow = sqlx::query_as(concat!(
            "INSERT INTO api_keys (id, tenant_id, name, scopes, created_by, expires_at,
                                   secret_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            key_columns!()
        ))
        .bind(key.id)
        .bind(key.tenant.as_str())
        .bind(&key.name)
        .bind(key.scopes.to_string())
        .bind(&key.created_by)
        .bind(key.expires_at)
        .bind(key.secret_hash.as_slice())
        .fetch_one(self.pool())
        .await
        .map_err(missing(format!("tenant {}", key.tenant)))?;
        row.try_into()
    }

    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyCredentials>> {
        let row: Option<KeyCredentialsRow<KeyRow>> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            ", secret_hash FROM api_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        row.map(|r| {
            Ok(ApiKeyCredentials {
                secret_hash: digest(&r.secret_hash)?,
                key: r.key.try_into()?,
            })
        })
        .transpose()
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, seq DESC"
        ))
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    async fn revoke_api_key(&self, tenant: &TenantId, id: ApiKeyId) -> Result<ApiKey> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
             WHERE id = $1 AND tenant_id = $2 RETURNING ",
            key_columns!()
        ))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format_args!("api key {id}")))?
            .try_into()
    }
}
