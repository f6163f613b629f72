//! [`AgentStore`] on SQLite: instants are this process's clock, in milliseconds.

use async_trait::async_trait;
use switchyard_types::{Agent, AgentHello, AgentId, AgentStatus, Error, Result, TenantId};
use uuid::Uuid;

use crate::agents::AgentStore;
use crate::error::from_sqlx;
use crate::identity_rows::{at, corrupt, missing, tenant_id, uuid};
use crate::sqlite::{SqliteStore, now_ms};

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    tenant_id: String,
    name: String,
    pool: String,
    labels: String,
    status: i16,
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
            capacity: u32::try_from(r.capacity).map_err(|_| corrupt("capacity"))?,
            running: u32::try_from(r.running).map_err(|_| corrupt("running"))?,
            version: r.version,
            last_heartbeat_at: at(r.last_heartbeat_at)?,
            created_at: at(r.created_at)?,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, name, pool, labels, status, capacity, running, version, \
                       last_heartbeat_at, created_at";

#[async_trait]
impl AgentStore for SqliteStore {
    async fn connect_agent(&self, hello: &AgentHello) -> Result<Agent> {
        let row: AgentRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents (id, tenant_id, name, pool, labels, status, capacity, version,
                                 session_id, last_heartbeat_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                 pool = excluded.pool, labels = excluded.labels, status = excluded.status,
                 capacity = excluded.capacity, version = excluded.version,
                 session_id = excluded.session_id, running = 0,
                 last_heartbeat_at = excluded.last_heartbeat_at
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
        .fetch_one(&self.pool)
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
            "UPDATE agents SET last_heartbeat_at = ?4, running = ?5
             WHERE tenant_id = ?1 AND id = ?2 AND session_id = ?3",
        )
        .bind(tenant.as_str())
        .bind(id.to_string())
        .bind(session.to_string())
        .bind(now_ms())
        .bind(i64::from(running))
        .execute(&self.pool)
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
            "UPDATE agents SET status = ?4, session_id = NULL
             WHERE tenant_id = ?1 AND id = ?2 AND session_id = ?3",
        )
        .bind(tenant.as_str())
        .bind(id.to_string())
        .bind(session.to_string())
        .bind(status.as_i16())
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
}
