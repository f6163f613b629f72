//! [`AgentStore`] on PostgreSQL. Every instant is the server's `now()`; an enrollment locks its
//! registration token's row (`SELECT … FOR UPDATE`) for the whole exchange, so concurrent
//! enrollments with one token are serialised and the later ones find it used.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use switchyard_types::{
    Agent, AgentHello, AgentId, AgentStatus, Enrollment, Error, NewRegistrationToken, PoolSettings,
    RegistrationToken, RegistrationTokenId, Result, TenantId,
};
use uuid::Uuid;

use crate::agents::{AgentStore, StreamBeat, in_order, updated_or_why};
use crate::error::from_sqlx;
use crate::identity_rows::{
    PoolRow, PresentedTokenRow, connect_refused, corrupt, enrolled_by_name, missing, name_taken,
    presented_token, tenant_id,
};
use crate::postgres::PgStore;
use crate::rows::{db_int, millis};

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    tenant_id: String,
    name: String,
    pool: String,
    labels: serde_json::Value,
    status: i16,
    draining: bool,
    capacity: i32,
    running: i32,
    version: String,
    last_heartbeat_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl TryFrom<AgentRow> for Agent {
    type Error = Error;

    fn try_from(r: AgentRow) -> Result<Agent> {
        Ok(Agent {
            id: r.id,
            tenant: tenant_id(&r.tenant_id)?,
            name: r.name,
            pool: r.pool,
            labels: serde_json::from_value(r.labels).map_err(|_| corrupt("labels"))?,
            status: AgentStatus::from_i16(r.status).ok_or_else(|| corrupt("status"))?,
            draining: r.draining,
            capacity: u32::try_from(r.capacity).map_err(|_| corrupt("capacity"))?,
            running: u32::try_from(r.running).map_err(|_| corrupt("running"))?,
            version: r.version,
            last_heartbeat_at: r.last_heartbeat_at,
            created_at: r.created_at,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, name, pool, labels, status, draining, capacity, running, version, \
                       last_heartbeat_at, created_at";

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    tenant_id: String,
    pool: String,
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    agent_id: Option<Uuid>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for RegistrationToken {
    type Error = Error;

    fn try_from(r: TokenRow) -> Result<RegistrationToken> {
        Ok(RegistrationToken {
            id: r.id,
            tenant: tenant_id(&r.tenant_id)?,
            pool: r.pool,
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            used_at: r.used_at,
            agent_id: r.agent_id,
            revoked_at: r.revoked_at,
        })
    }
}

/// Registers (or re-registers) an agent by name, keeping the id of an existing one.
async fn connect_by_name(pool: &PgPool, hello: &AgentHello) -> Result<Agent> {
    let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO agents (id, tenant_id, name, pool, labels, status, capacity, version,
                             session_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (tenant_id, name) DO UPDATE SET
             pool = EXCLUDED.pool, labels = EXCLUDED.labels, status = EXCLUDED.status,
             capacity = EXCLUDED.capacity, version = EXCLUDED.version,
             session_id = EXCLUDED.session_id, running = 0, last_heartbeat_at = now()
         WHERE NOT agents.enrolled
         RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(hello.tenant.as_str())
    .bind(&hello.name)
    .bind(&hello.pool)
    .bind(serde_json::json!(hello.labels))
    .bind(AgentStatus::Healthy.as_i16())
    .bind(db_int(hello.capacity))
    .bind(&hello.version)
    .bind(hello.session)
    .fetch_optional(pool)
    .await
    .map_err(missing(format!("tenant {}", hello.tenant)))?;
    row.ok_or_else(|| enrolled_by_name(&hello.name))?.try_into()
}

/// Connects enrolled agent `id`: live, and in `hello.pool`.
async fn connect_enrolled(pool: &PgPool, id: AgentId, hello: &AgentHello) -> Result<Option<Agent>> {
    let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE agents SET labels = $4, status = $5, capacity = $6, version = $7,
                           session_id = $8, running = 0, last_heartbeat_at = now()
         WHERE tenant_id = $1 AND id = $2 AND pool = $3 AND status <> $9
         RETURNING {COLUMNS}"
    )))
    .bind(hello.tenant.as_str())
    .bind(id)
    .bind(&hello.pool)
    .bind(serde_json::json!(hello.labels))
    .bind(AgentStatus::Healthy.as_i16())
    .bind(db_int(hello.capacity))
    .bind(&hello.version)
    .bind(hello.session)
    .bind(AgentStatus::Terminated.as_i16())
    .fetch_optional(pool)
    .await
    .map_err(from_sqlx)?;
    row.map(Agent::try_from).transpose()
}

#[async_trait]
impl AgentStore for PgStore {
    async fn connect_agent(&self, hello: &AgentHello) -> Result<Agent> {
        let Some(id) = hello.id else {
            return connect_by_name(self.pool(), hello).await;
        };
        match connect_enrolled(self.pool(), id, hello).await? {
            Some(agent) => Ok(agent),
            None => Err(connect_refused(
                id,
                &hello.pool,
                self.agent(&hello.tenant, id).await,
            )),
        }
    }

    async fn agent_heartbeats(&self, beats: &[StreamBeat]) -> Result<Vec<Option<bool>>> {
        let tenants: Vec<&str> = beats.iter().map(|b| b.tenant.as_str()).collect();
        let ids: Vec<Uuid> = beats.iter().map(|b| b.id).collect();
        let sessions: Vec<Uuid> = beats.iter().map(|b| b.session).collect();
        let running: Vec<i32> = beats.iter().map(|b| db_int(b.beat.running)).collect();
        let statuses: Vec<i16> = beats.iter().map(|b| b.beat.status.as_i16()).collect();
        let leases: Vec<i64> = beats.iter().map(|b| millis(b.beat.lease)).collect();
        let rows: Vec<(Uuid, Uuid, bool)> = sqlx::query_as(
            "UPDATE agents AS a
             SET last_heartbeat_at = now(), running = v.running, status = v.status,
                 lease_until = now() + v.lease * interval '1 millisecond'
             FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::int4[], $5::int2[], $7::int8[])
                  AS v(tenant_id, id, session_id, running, status, lease)
             WHERE a.tenant_id = v.tenant_id AND a.id = v.id AND a.session_id = v.session_id
               AND a.status <> $6
             RETURNING a.id, a.session_id, a.draining",
        )
        .bind(&tenants)
        .bind(&ids)
        .bind(&sessions)
        .bind(&running)
        .bind(&statuses)
        .bind(AgentStatus::Terminated.as_i16())
        .bind(&leases)
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(in_order(beats, rows))
    }

    async fn set_agent_draining(
        &self,
        tenant: &TenantId,
        id: AgentId,
        draining: bool,
    ) -> Result<Agent> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET draining = $3
             WHERE tenant_id = $1 AND id = $2 AND status <> $4
             RETURNING {COLUMNS}"
        )))
        .bind(tenant.as_str())
        .bind(id)
        .bind(draining)
        .bind(AgentStatus::Terminated.as_i16())
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        updated_or_why(self, tenant, id, row).await
    }

    async fn pool_settings(&self, tenant: &TenantId) -> Result<Vec<PoolSettings>> {
        let rows: Vec<PoolRow> = sqlx::query_as(
            "SELECT name, min_agents::bigint AS min_agents, max_agents::bigint AS max_agents,
                    target_agents::bigint AS target_agents
             FROM pools WHERE tenant_id = $1 ORDER BY name",
        )
        .bind(tenant.as_str())
        .fetch_all(self.pool())
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
            "INSERT INTO pools (tenant_id, name, min_agents, max_agents, target_agents)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                 min_agents = EXCLUDED.min_agents, max_agents = EXCLUDED.max_agents,
                 target_agents = EXCLUDED.target_agents, updated_at = now()
             RETURNING name, min_agents::bigint AS min_agents, max_agents::bigint AS max_agents,
                       target_agents::bigint AS target_agents",
        )
        .bind(tenant.as_str())
        .bind(&settings.pool)
        .bind(db_int(settings.min_agents))
        .bind(db_int(settings.max_agents))
        .bind(settings.target_agents.map(db_int))
        .fetch_one(self.pool())
        .await
        .map_err(missing(format!("tenant {tenant}")))?;
        row.try_into()
    }

    async fn touch_agent(&self, tenant: &TenantId, id: AgentId) -> Result<Agent> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET last_heartbeat_at = now(), status = $3
             WHERE tenant_id = $1 AND id = $2 AND status <> $4
             RETURNING {COLUMNS}"
        )))
        .bind(tenant.as_str())
        .bind(id)
        .bind(AgentStatus::Healthy.as_i16())
        .bind(AgentStatus::Terminated.as_i16())
        .fetch_optional(self.pool())
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
            "UPDATE agents SET status = $4, session_id = NULL
             WHERE tenant_id = $1 AND id = $2 AND session_id = $3 AND status <> $5",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(session)
        .bind(status.as_i16())
        .bind(AgentStatus::Terminated.as_i16())
        .execute(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }

    async fn list_agents(&self, tenant: &TenantId, pool: Option<&str>) -> Result<Vec<Agent>> {
        let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents
             WHERE tenant_id = $1 AND ($2::text IS NULL OR pool = $2)
             ORDER BY last_heartbeat_at DESC, id"
        )))
        .bind(tenant.as_str())
        .bind(pool)
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(Agent::try_from).collect()
    }

    async fn agent(&self, tenant: &TenantId, id: AgentId) -> Result<Agent> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format!("agent {id}")))?
            .try_into()
    }

    async fn deregister_agent(&self, tenant: &TenantId, id: AgentId) -> Result<Agent> {
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET status = $3, session_id = NULL
             WHERE tenant_id = $1 AND id = $2
             RETURNING {COLUMNS}"
        )))
        .bind(tenant.as_str())
        .bind(id)
        .bind(AgentStatus::Terminated.as_i16())
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format!("agent {id}")))?
            .try_into()
    }

    async fn create_registration_token(
        &self,
        token: &NewRegistrationToken,
    ) -> Result<RegistrationToken> {
        let row: TokenRow = sqlx::query_as(concat!(
            "INSERT INTO registration_tokens (id, tenant_id, pool, digest, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')
             RETURNING ",
            token_columns!()
        ))
        .bind(token.id)
        .bind(token.tenant.as_str())
        .bind(&token.pool)
        .bind(token.digest.as_slice())
        .bind(&token.created_by)
        .bind(millis(token.ttl))
        .fetch_one(self.pool())
        .await
        .map_err(missing(format!("tenant {}", token.tenant)))?;
        row.try_into()
    }

    async fn list_registration_tokens(&self, tenant: &TenantId) -> Result<Vec<RegistrationToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(concat!(
            "SELECT ",
            token_columns!(),
            " FROM registration_tokens WHERE tenant_id = $1 ORDER BY created_at DESC, seq DESC"
        ))
        .bind(tenant.as_str())
        .fetch_all(self.pool())
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
            "UPDATE registration_tokens SET revoked_at = COALESCE(revoked_at, now())
             WHERE id = $1 AND tenant_id = $2 RETURNING ",
            token_columns!()
        ))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format_args!("registration token {id}")))?
            .try_into()
    }

    async fn enroll_agent(&self, enrollment: &Enrollment) -> Result<(RegistrationToken, Agent)> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        // Locks the token: a concurrent enrollment with it waits here, then finds it used.
        let row: Option<PresentedTokenRow<TokenRow>> = sqlx::query_as(concat!(
            "SELECT ",
            token_columns!(),
            ", digest, expires_at <= now() AS expired
             FROM registration_tokens WHERE id = $1 FOR UPDATE"
        ))
        .bind(enrollment.token)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let token = presented_token(row, &enrollment.digest)?;
        // A new agent, or a new one in place of a deregistered agent of that name; a live one
        // of that name keeps it, and the transaction rolls back.
        let agent: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents (id, tenant_id, name, pool, labels, status, capacity, version,
                                 enrolled)
             VALUES ($1, $2, $3, $4, $5, $6, 0, '', true)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                 id = EXCLUDED.id, pool = EXCLUDED.pool, labels = EXCLUDED.labels, enrolled = true,
                 status = EXCLUDED.status, capacity = 0, running = 0, version = '',
                 session_id = NULL, last_heartbeat_at = now(), created_at = now()
             WHERE agents.status = $7
             RETURNING {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(token.tenant.as_str())
        .bind(&enrollment.name)
        .bind(&token.pool)
        .bind(serde_json::json!(enrollment.labels))
        .bind(AgentStatus::Offline.as_i16())
        .bind(AgentStatus::Terminated.as_i16())
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        let agent = Agent::try_from(agent.ok_or_else(|| name_taken(&enrollment.name))?)?;
        let used: TokenRow = sqlx::query_as(concat!(
            "UPDATE registration_tokens SET used_at = now(), agent_id = $2 WHERE id = $1
             RETURNING ",
            token_columns!()
        ))
        .bind(token.id)
        .bind(agent.id)
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok((used.try_into()?, agent))
    }
}
