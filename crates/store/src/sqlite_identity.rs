//! [`IdentityStore`] on the embedded SQLite store. Its one connection serialises every
//! transaction, so presenting a refresh token is a plain read-decide-write transaction; the
//! instant is read once the transaction holds the connection, hence after any rotation that
//! came before it.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};
use switchyard_types::{
    ApiKey, ApiKeyCredentials, ApiKeyId, Error, NewApiKey, NewRefreshToken, NewUser, Result, Role,
    Rotation, Tenant, TenantId, User, UserCredentials, UserId,
};
use uuid::Uuid;

use crate::IdentityStore;
use crate::error::from_sqlx;
use crate::identity_rows::{
    CredentialsRow, KeyCredentialsRow, RoleRow, at, digest, missing, scopes, tenant_id, uuid,
};
use crate::sqlite::{SqliteStore, now_ms};

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    name: String,
    created_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = Error;

    fn try_from(r: TenantRow) -> Result<Tenant> {
        Ok(Tenant {
            id: tenant_id(&r.id)?,
            name: r.name,
            created_at: at(r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    tenant_id: String,
    email: String,
    role: String,
    disabled: bool,
    created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = Error;

    fn try_from(r: UserRow) -> Result<User> {
        Ok(User {
            id: uuid(&r.id)?,
            tenant: tenant_id(&r.tenant_id)?,
            email: r.email,
            role: r.role,
            disabled: r.disabled,
            created_at: at(r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    tenant_id: String,
    name: String,
    scopes: String,
    created_by: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = Error;

    fn try_from(r: KeyRow) -> Result<ApiKey> {
        Ok(ApiKey {
            scopes: scopes(&r.scopes, &format!("api key {}", r.id))?,
            id: uuid(&r.id)?,
            tenant: tenant_id(&r.tenant_id)?,
            name: r.name,
            created_by: r.created_by,
            created_at: at(r.created_at)?,
            expires_at: r.expires_at.map(at).transpose()?,
            revoked_at: r.revoked_at.map(at).transpose()?,
        })
    }
}

/// A presented refresh token with its family and user.
#[derive(sqlx::FromRow)]
struct PresentedRow {
    family_id: String,
    expires_at: i64,
    rotated_at: Option<i64>,
    family_revoked: bool,
    user_id: String,
    tenant_id: String,
    disabled: bool,
}

/// Stores a token in `family` (which exists), issued at `now`.
async fn insert_token(
    tx: &mut Transaction<'static, Sqlite>,
    family: &str,
    token: &NewRefreshToken,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, family_id, issued_at, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(token.hash.as_slice())
    .bind(family)
    .bind(now)
    .bind(token.expires_at.timestamp_millis())
    .execute(&mut **tx)
    .await
    .map_err(from_sqlx)?;
    Ok(())
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn create_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant> {
        let row: TenantRow = sqlx::query_as(
            "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3) RETURNING *",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(from_sqlx)?;
        row.try_into()
    }

    async fn tenant(&self, id: &TenantId) -> Result<Tenant> {
        let row: Option<TenantRow> = sqlx::query_as("SELECT * FROM tenants WHERE id = ?1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format_args!("tenant {id}")))?
            .try_into()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows: Vec<TenantRow> = sqlx::query_as("SELECT * FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(from_sqlx)?;
        rows.into_iter().map(Tenant::try_from).collect()
    }

    async fn put_role(&self, tenant: &TenantId, role: &Role) -> Result<Role> {
        let row: RoleRow = sqlx::query_as(
            "INSERT INTO roles (tenant_id, name, scopes) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant_id, name) DO UPDATE SET scopes = excluded.scopes
             RETURNING name, scopes",
        )
        .bind(tenant.as_str())
        .bind(&role.name)
        .bind(role.scopes.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(missing(format!("tenant {tenant}")))?;
        row.try_into()
    }

    async fn role(&self, tenant: &TenantId, name: &str) -> Result<Option<Role>> {
        let row: Option<RoleRow> =
            sqlx::query_as("SELECT name, scopes FROM roles WHERE tenant_id = ?1 AND name = ?2")
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(from_sqlx)?;
        row.map(Role::try_from).transpose()
    }

    async fn list_roles(&self, tenant: &TenantId) -> Result<Vec<Role>> {
        let rows: Vec<RoleRow> =
            sqlx::query_as("SELECT name, scopes FROM roles WHERE tenant_id = ?1 ORDER BY name")
                .bind(tenant.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(from_sqlx)?;
        rows.into_iter().map(Role::try_from).collect()
    }

    async fn create_user(&self, user: NewUser) -> Result<User> {
        let row: UserRow = sqlx::query_as(concat!(
            "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING ",
            user_columns!()
        ))
        .bind(Uuid::now_v7().to_string())
        .bind(user.tenant.as_str())
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.role)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(missing(format!("tenant {}", user.tenant)))?;
        row.try_into()
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserCredentials>> {
        let row: Option<CredentialsRow<UserRow>> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM users WHERE email = ?1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
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
            " FROM users WHERE id = ?1 AND tenant_id = ?2"
        ))
        .bind(id.to_string())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format_args!("user {id}")))?
            .try_into()
    }

    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = ?1 ORDER BY email"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(User::try_from).collect()
    }

    async fn set_password(&self, tenant: &TenantId, id: UserId, password_hash: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE users SET password_hash = ?3 WHERE id = ?1 AND tenant_id = ?2")
                .bind(id.to_string())
                .bind(tenant.as_str())
                .bind(password_hash)
                .execute(&self.pool)
                .await
                .map_err(from_sqlx)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format_args!("user {id}")));
        }
        Ok(())
    }

    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(from_sqlx)?;
        let now = now_ms();
        let family = token.family.to_string();
        let created = sqlx::query(
            "INSERT INTO refresh_families (id, user_id, tenant_id, created_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&family)
        .bind(token.user.to_string())
        .bind(token.tenant.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(missing(format!("user {}", token.user)))?;
        if created.rows_affected() == 0 {
            // The family exists: the token must refresh the same user.
            let owner: (String, String) =
                sqlx::query_as("SELECT user_id, tenant_id FROM refresh_families WHERE id = ?1")
                    .bind(&family)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(from_sqlx)?;
            if owner != (token.user.to_string(), token.tenant.as_str().to_owned()) {
                return Err(Error::conflict(format!(
                    "refresh family {family} belongs to another user"
                )));
            }
        }
        insert_token(&mut tx, &family, token, now).await?;
        tx.commit().await.map_err(from_sqlx)
    }

    async fn rotate_refresh_token(
        &self,
        presented: &[u8; 32],
        next: &NewRefreshToken,
        grace: Duration,
    ) -> Result<Rotation> {
        let mut tx = self.pool.begin().await.map_err(from_sqlx)?;
        // Read once this transaction holds the one connection: never before an earlier rotation.
        let now = now_ms();
        let row: Option<PresentedRow> = sqlx::query_as(
            "SELECT t.family_id, t.expires_at, t.rotated_at,
                    f.revoked_at IS NOT NULL AS family_revoked,
                    u.id AS user_id, u.tenant_id, u.disabled
             FROM refresh_tokens t
             JOIN refresh_families f ON f.id = t.family_id
             JOIN users u ON u.id = f.user_id
             WHERE t.hash = ?1",
        )
        .bind(presented.as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        if row.family_revoked || row.disabled || row.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        let within_grace = row.rotated_at.is_none_or(|rotated| {
            Duration::from_millis(u64::try_from(now - rotated).unwrap_or(0)) < grace
        });
        let answer = if within_grace {
            sqlx::query(
                "UPDATE refresh_tokens SET rotated_at = COALESCE(rotated_at, ?2) WHERE hash = ?1",
            )
            .bind(presented.as_slice())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            insert_token(&mut tx, &row.family_id, next, now).await?;
            Rotation::Rotated {
                user: uuid(&row.user_id)?,
                tenant: tenant_id(&row.tenant_id)?,
            }
        } else {
            sqlx::query("UPDATE refresh_families SET revoked_at = ?2 WHERE id = ?1")
                .bind(&row.family_id)
                .bind(now)
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
        let revoked: Option<String> = sqlx::query_scalar(
            "UPDATE refresh_families SET revoked_at = ?2
             WHERE id = (SELECT family_id FROM refresh_tokens WHERE hash = ?1)
               AND revoked_at IS NULL
             RETURNING id",
        )
        .bind(presented.as_slice())
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(revoked.is_some())
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey> {
        let row: KeyRow = sqlx::query_as(concat!(
            "INSERT INTO api_keys (id, tenant_id, name, scopes, created_by, created_at,
                                   expires_at, secret_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING ",
            key_columns!()
        ))
        .bind(key.id.to_string())
        .bind(key.tenant.as_str())
        .bind(&key.name)
        .bind(key.scopes.to_string())
        .bind(&key.created_by)
        .bind(now_ms())
        .bind(key.expires_at.map(|t| t.timestamp_millis()))
        .bind(key.secret_hash.as_slice())
        .fetch_one(&self.pool)
        .await
        .map_err(missing(format!("tenant {}", key.tenant)))?;
        row.try_into()
    }

    async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyCredentials>> {
        let row: Option<KeyCredentialsRow<KeyRow>> = sqlx::query_as(concat!(
            "SELECT ",
            key_columns!(),
            ", secret_hash FROM api_keys WHERE id = ?1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
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
            " FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at DESC, rowid DESC"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    async fn revoke_api_key(&self, tenant: &TenantId, id: ApiKeyId) -> Result<ApiKey> {
        let row: Option<KeyRow> = sqlx::query_as(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3)
             WHERE id = ?1 AND tenant_id = ?2 RETURNING ",
            key_columns!()
        ))
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format_args!("api key {id}")))?
            .try_into()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use switchyard_types::{NewRefreshToken, NewUser, Rotation, TenantId};
    use uuid::Uuid;

    use crate::IdentityStore;
    use crate::sqlite::SqliteStore;

    /// No API disables users yet: set the flag directly and check a refresh is refused.
    #[tokio::test]
    async fn a_disabled_users_refresh_token_is_invalid() {
        let store = SqliteStore::connect("sqlite::memory:", true).await.unwrap();
        let tenant = TenantId::default_tenant();
        let user = store
            .create_user(NewUser {
                tenant: tenant.clone(),
                email: "off@example.com".into(),
                password_hash: "$argon2id$x".into(),
                role: "viewer".into(),
            })
            .await
            .unwrap();
        let token = |hash: u8| NewRefreshToken {
            hash: [hash; 32],
            family: Uuid::nil(),
            user: user.id,
            tenant: tenant.clone(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
        };
        store.insert_refresh_token(&token(1)).await.unwrap();
        sqlx::query("UPDATE users SET disabled = 1 WHERE id = ?1")
            .bind(user.id.to_string())
            .execute(&store.pool)
            .await
            .unwrap();
        let grace = std::time::Duration::from_secs(60);
        let r = store
            .rotate_refresh_token(&[1; 32], &token(2), grace)
            .await
            .unwrap();
        assert_eq!(r, Rotation::Invalid);
        sqlx::query("UPDATE users SET disabled = 0 WHERE id = ?1")
            .bind(user.id.to_string())
            .execute(&store.pool)
            .await
            .unwrap();
        let r = store
            .rotate_refresh_token(&[1; 32], &token(2), grace)
            .await
            .unwrap();
        assert!(matches!(r, Rotation::Rotated { .. }), "{r:?}");
    }
}
