//! [`AgentStore`] on PostgreSQL. Every instant is the server's `now()`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use switchyard_types::{Agent, AgentHello, AgentId, AgentStatus, Error, Result, TenantId};
use uuid::Uuid;

use crate::agents::AgentStore;
use crate::error::from_sqlx;
use crate::identity_rows::{corrupt, missing, tenant_id};
use crate::postgres::PgStore;

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    tenant_id: String,
    name: String,
    pool: String,
    labels: serde_json::Value,
    status: i16,
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
            capacity: u32::try_from(r.capacity).map_err(|_| corrupt("capacity"))?,
            running: u32::try_from(r.running).map_err(|_| corrupt("running"))?,
            version: r.version,
            last_heartbeat_at: r.last_heartbeat_at,
            created_at: r.created_at,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, name, pool, labels, status, capacity, running, version, \
                       last_heartbeat_at, created_at";

#[async_trait]
impl AgentStore for PgStore {
    async fn connect_agent(&self, hello: &AgentHello) -> Result<Agent> {
        let row: AgentRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents (id, tenant_id, name, pool, labels, status, capacity, version,
                                 session_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                 pool = EXCLUDED.pool, labels = EXCLUDED.labels, status = EXCLUDED.status,
                 capacity = EXCLUDED.capacity, version = EXCLUDED.version,
                 session_id = EXCLUDED.session_id, running = 0, last_heartbeat_at = now()
             RETURNING {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(hello.tenant.as_str())
        .bind(&hello.name)
        .bind(&hello.pool)
        .bind(serde_json::json!(hello.labels))
        .bind(AgentStatus::Healthy.as_i16())
        .bind(i32::try_from(hello.capacity).unwrap_or(i32::MAX))
        .bind(&hello.version)
        .bind(hello.session)
        .fetch_one(self.pool())
        .await
        .map_err(missing(format!("tenant {}", hello.tenant)))?;
        row.try_into()
    }

    async fn agent_heartbeat(
        &self,
        tenant: &TenantId,
        id: AgentId,
        session: Uuid,
        running: u32,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE agents SET last_heartbeat_at = now(), running = $4
             WHERE tenant_id = $1 AND id = $2 AND session_id = $3",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(session)
        .bind(i32::try_from(running).unwrap_or(i32::MAX))
        .execute(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(done.rows_affected() == 1)
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
             WHERE tenant_id = $1 AND id = $2 AND session_id = $3",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(session)
        .bind(status.as_i16())
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
}
