//! [`AgentStore`] on SQLite: instants are this process's clock, in milliseconds. Its one
//! connection serialises every transaction, so an enrollment is a plain read-decide-write
//! transaction, and of concurrent enrollments with one token the later ones find it used.

use async_trait::async_trait;
use sqlx::SqlitePool;
use switchyard_types::{
    Agent, AgentHello, AgentId, AgentStatus, Enrollment, Error, NewRegistrationToken, PoolSettings,
    RegistrationToken, RegistrationTokenId, Result, TenantId,
};
use uuid::Uuid;

use crate::agents::{AgentStore, StreamBeat, in_order, updated_or_why};
use crate::error::from_sqlx;
use crate::identity_rows::{
    PoolRow, PresentedTokenRow, at, connect_refused, corrupt, enrolled_by_name, missing,
    name_taken, presented_token, tenant_id, uuid,
};
use crate::rows::millis;
use crate::sqlite::{SqliteStore, now_ms};

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    tenant_id: String,
    name: String,
    pool: String,
    labels: String,
    status: i16,
    draining: bool,
    capacity: i64,
    running: i64,
    version: String,
    last_heartbeat_at: i64,
    created_at: i64,
}

impl TryFrom<AgentRow> for Agent {
    type Error = Error;

    fn try_from(r: AgentRow) -> Result<Agent> {
        Ok(Agent {
            id: uuid(&r.id)?,
            tenant: tenant_id(&r.tenant_id)?,
            name: r.name,
            pool: r.pool,
            labels: serde_json::from_str(&r.labels).map_err(|_| corrupt("labels"))?,
            status: AgentStatus::from_i16(r.status).ok_or_else(|| corrupt("status"))?,
            draining: r.draining,
            capacity: u32::try_from(r.capacity).map_err(|_| corrupt("capacity"))?,
            running: u32::try_from(r.running).map_err(|_| corrupt("running"))?,
            version: r.version,
            last_heartbeat_at: at(r.last_heartbeat_at)?,
            created_at: at(r.created_at)?,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, name, pool, labels, status, draining, capacity, running, version, \
                       last_heartbeat_at, created_at";

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    tenant_id: String,
    pool: String,
    created_by: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    agent_id: Option<String>,
    revoked_at: Option<i64>,
}

impl TryFrom<TokenRow> for RegistrationToken {
    type Error = Error;

    fn try_from(r: TokenRow) -> Result<RegistrationToken> {
        Ok(RegistrationToken {
            id: uuid(&r.id)?,
            tenant: tenant_id(&r.tenant_id)?,
            pool: r.pool,
            created_by: r.created_by,
            created_at: at(r.created_at)?,
            expires_at: at(r.expires_at)?,
            used_at: r.used_at.map(at).transpose()?,
            agent_id: r.agent_id.as_deref().map(uuid).transpose()?,
            revoked_at: r.revoked_at.map(at).transpose()?,
        })
    }
}

/// Registers (or re-registers) an agent by name, keeping the id of an existing one.
async fn connect_by_name(pool: &SqlitePool, hello: &AgentHello) -> Result<Agent> {
    let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO agents (id, tenant_id, name, pool, labels, status, capacity, version,
                             session_id, last_heartbeat_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
         ON CONFLICT (tenant_id, name) DO UPDATE SET
             pool = excluded.pool, labels = excluded.labels, status = excluded.status,
             capacity = excluded.capacity, version = excluded.version,
             session_id = excluded.session_id, running = 0,
             last_heartbeat_at = excluded.last_heartbeat_at
         WHERE NOT agents.enrolled
         RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7().to_string())
    .bind(hello.tenant.as_str())
    .bind(&hello.name)
    .bind(&hello.pool)
    .bind(serde_json::json!(hello.labels).to_string())
    .bind(AgentStatus::Healthy.as_i16())
    .bind(i64::from(hello.capacity))
    .bind(&hello.version)
    .bind(hello.session.to_string())
    .bind(now_ms())
    .fetch_optional(pool)
    .await
    .map_err(missing(format!("tenant {}", hello.tenant)))?;
    row.ok_or_else(|| enrolled_by_name(&hello.name))?.try_into()
}

/// Connects enrolled agent `id`: live, and in `hello.pool`.
async fn connect_enrolled(
    pool: &SqlitePool,
    id: AgentId,
    hello: &AgentHello,
) -> Result<Option<Agent>> {
    let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE agents SET labels = ?4, status = ?5, capacity = ?6, version = ?7,
                           session_id = ?8, running = 0, last_heartbeat_at = ?9
         WHERE tenant_id = ?1 AND id = ?2 AND pool = ?3 AND status <> ?10
         RETURNING {COLUMNS}"
    )))
    .bind(hello.tenant.as_str())
    .bind(id.to_string())
    .bind(&hello.pool)
    .bind(serde_json::json!(hello.labels).to_string())
    .bind(AgentStatus::Healthy.as_i16())
    .bind(i64::from(hello.capacity))
    .bind(&hello.version)
    .bind(hello.session.to_string())
    .bind(now_ms())
    .bind(AgentStatus::Terminated.as_i16())
    .fetch_optional(pool)
    .await
    .map_err(from_sqlx)?;
    row.map(Agent::try_from).transpose()
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn connect_agent(&self, hello: &AgentHello) -> Result<Agent> {
        let Some(id) = hello.id else {
            return connect_by_name(&self.pool, hello).await;
        };
        match connect_enrolled(&self.pool, id, hello).await? {
            Some(agent) => Ok(agent),
            None => Err(connect_refused(
                id,
                &hello.pool,
                self.agent(&hello.tenant, id).await,
            )),
        }
    }

    async fn agent_heartbeats(&self, beats: &[StreamBeat]) -> Result<Vec<Option<bool>>> {
        let mut tx = self.pool.begin().await.map_err(from_sqlx)?;
        let now = now_ms();
        let mut rows = Vec::with_capacity(beats.len());
        for b in beats {
            let draining: Option<bool> = sqlx::query_scalar(
                "UPDATE agents SET last_heartbeat_at = ?4, running = ?5, status = ?6,
                                   lease_until = ?4 + ?8
                 WHERE tenant_id = ?1 AND id = ?2 AND session_id = ?3 AND status <> ?7
                 RETURNING draining",
            )
            .bind(b.tenant.as_str())
            .bind(b.id.to_string())
            .bind(b.session.to_string())
            .bind(now)
            .bind(i64::from(b.beat.running))
            .bind(b.beat.status.as_i16())
            .bind(AgentStatus::Terminated.as_i16())
            .bind(millis(b.beat.lease))
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            if let Some(draining) = draining {
                rows.push((b.id, b.session, draining));
            }
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(in_order(beats, rows))
    }

    async fn set_agent_draining(
        &self,
        tenant: &TenantId,
        id: AgentId,
        draining: bool,
    ) -> Result<Agent> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET draining = ?3
             WHERE tenant_id = ?1 AND id = ?2 AND status <> ?4
             RETURNING {COLUMNS}"
        )))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .bind(draining)
        .bind(AgentStatus::Terminated.as_i16())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        updated_or_why(self, tenant, id, row).await
    }

    async fn pool_settings(&self, tenant: &TenantId) -> Result<Vec<PoolSettings>> {
        let rows: Vec<PoolRow> = sqlx::query_as(
            "SELECT name, min_agents, max_agents, target_agents FROM pools
             WHERE tenant_id = ?1 ORDER BY name",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(PoolSettings::try_from).collect()
    }

    async fn set_pool_settings(
        &self,
        tenant: &TenantId,
        settings: &PoolSettings,
    ) -> Result<PoolSettings> {
        let row: PoolRow = sqlx::query_as(
            "INSERT INTO pools (tenant_id, name, min_agents, max_agents, target_agents, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                 min_agents = excluded.min_agents, max_agents = excluded.max_agents,
                 target_agents = excluded.target_agents, updated_at = excluded.updated_at
             RETURNING name, min_agents, max_agents, target_agents",
        )
        .bind(tenant.as_str())
        .bind(&settings.pool)
        .bind(i64::from(settings.min_agents))
        .bind(i64::from(settings.max_agents))
        .bind(settings.target_agents.map(i64::from))
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(missing(format!("tenant {tenant}")))?;
        row.try_into()
    }

    async fn touch_agent(&self, tenant: &TenantId, id: AgentId) -> Result<Agent> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET last_heartbeat_at = ?3, status = ?4
             WHERE tenant_id = ?1 AND id = ?2 AND status <> ?5
             RETURNING {COLUMNS}"
        )))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .bind(now_ms())
        .bind(AgentStatus::Healthy.as_i16())
        .bind(AgentStatus::Terminated.as_i16())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        updated_or_why(self, tenant, id, row).await
    }

    async fn disconnect_agent(
        &self,
        tenant: &TenantId,
        id: AgentId,
        session: Uuid,
        status: AgentStatus,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET status = ?4, session_id = NULL
             WHERE tenant_id = ?1 AND id = ?2 AND session_id = ?3 AND status <> ?5",
        )
        .bind(tenant.as_str())
        .bind(id.to_string())
        .bind(session.to_string())
        .bind(status.as_i16())
        .bind(AgentStatus::Terminated.as_i16())
        .execute(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }

    async fn list_agents(&self, tenant: &TenantId, pool: Option<&str>) -> Result<Vec<Agent>> {
        let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents
             WHERE tenant_id = ?1 AND (?2 IS NULL OR pool = ?2)
             ORDER BY last_heartbeat_at DESC, id"
        )))
        .bind(tenant.as_str())
        .bind(pool)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(Agent::try_from).collect()
    }

    async fn agent(&self, tenant: &TenantId, id: AgentId) -> Result<Agent> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE tenant_id = ?1 AND id = ?2"
        )))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format!("agent {id}")))?
            .try_into()
    }

    async fn deregister_agent(&self, tenant: &TenantId, id: AgentId) -> Result<Agent> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET status = ?3, session_id = NULL
             WHERE tenant_id = ?1 AND id = ?2
             RETURNING {COLUMNS}"
        )))
        .bind(tenant.as_str())
        .bind(id.to_string())
        .bind(AgentStatus::Terminated.as_i16())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format!("agent {id}")))?
            .try_into()
    }

    async fn create_registration_token(
        &self,
        token: &NewRegistrationToken,
    ) -> Result<RegistrationToken> {
        let now = now_ms();
        let row: TokenRow = sqlx::query_as(concat!(
            "INSERT INTO registration_tokens (id, tenant_id, pool, digest, created_by, created_at,
                                              expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING ",
            token_columns!()
        ))
        .bind(token.id.to_string())
        .bind(token.tenant.as_str())
        .bind(&token.pool)
        .bind(token.digest.as_slice())
        .bind(&token.created_by)
        .bind(now)
        .bind(now.saturating_add(millis(token.ttl)))
        .fetch_one(&self.pool)
        .await
        .map_err(missing(format!("tenant {}", token.tenant)))?;
        row.try_into()
    }

    async fn list_registration_tokens(&self, tenant: &TenantId) -> Result<Vec<RegistrationToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(concat!(
            "SELECT ",
            token_columns!(),
            " FROM registration_tokens WHERE tenant_id = ?1 ORDER BY created_at DESC, rowid DESC"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(RegistrationToken::try_from).collect()
    }

    async fn revoke_registration_token(
        &self,
        tenant: &TenantId,
        id: RegistrationTokenId,
    ) -> Result<RegistrationToken> {
        let row: Option<TokenRow> = sqlx::query_as(concat!(
            "UPDATE registration_tokens SET revoked_at = COALESCE(revoked_at, ?3)
             WHERE id = ?1 AND tenant_id = ?2 RETURNING ",
            token_columns!()
        ))
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format_args!("registration token {id}")))?
            .try_into()
    }

    async fn enroll_agent(&self, enrollment: &Enrollment) -> Result<(RegistrationToken, Agent)> {
        let mut tx = self.pool.begin().await.map_err(from_sqlx)?;
        // Read once this transaction holds the one connection: never before an earlier
        // enrollment's commit.
        let now = now_ms();
        let row: Option<PresentedTokenRow<TokenRow>> = sqlx::query_as(concat!(
            "SELECT ",
            token_columns!(),
            ", digest, expires_at <= ?2 AS expired FROM registration_tokens WHERE id = ?1"
        ))
        .bind(enrollment.token.to_string())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let token = presented_token(row, &enrollment.digest)?;
        // A new agent, or a new one in place of a deregistered agent of that name; a live one
        // of that name keeps it, and the transaction rolls back.
        let agent: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents (id, tenant_id, name, pool, labels, status, capacity, version,
                                 last_heartbeat_at, created_at, enrolled)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, '', ?7, ?7, 1)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                 id = excluded.id, pool = excluded.pool, labels = excluded.labels, enrolled = 1,
                 status = excluded.status, capacity = 0, running = 0, version = '',
                 session_id = NULL, last_heartbeat_at = excluded.last_heartbeat_at,
                 created_at = excluded.created_at
             WHERE agents.status = ?8
             RETURNING {COLUMNS}"
        )))
        .bind(Uuid::now_v7().to_string())
        .bind(token.tenant.as_str())
        .bind(&enrollment.name)
        .bind(&token.pool)
        .bind(serde_json::json!(enrollment.labels).to_string())
        .bind(AgentStatus::Offline.as_i16())
        .bind(now)
        .bind(AgentStatus::Terminated.as_i16())
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let agent = Agent::try_from(agent.ok_or_else(|| name_taken(&enrollment.name))?)?;
        let used: TokenRow = sqlx::query_as(concat!(
            "UPDATE registration_tokens SET used_at = ?2, agent_id = ?3 WHERE id = ?1
             RETURNING ",
            token_columns!()
        ))
        .bind(token.id.to_string())
        .bind(now)
        .bind(agent.id.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok((used.try_into()?, agent))
    }
}
