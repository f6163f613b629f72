//! [`DeploymentStore`] on PostgreSQL: every instant is the database's `now()`. A transition
//! locks its deployment's row (`FOR UPDATE`), decides and writes in one transaction; the unique
//! index on the environment a deployment holds makes the loser of a race between deployments of
//! one service fail (`Conflict`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use switchyard_types::{
    Deployment, DeploymentEvent, DeploymentFilter, DeploymentId, DeploymentState, Environment,
    Error, Evaluation, GateResult, Job, JobState, NewDeployment, NewEnvironment, NewJob,
    ProbeResult, Result, Signal, Summary, TenantId, Transition, Verdict, VersionFigures,
};

use crate::deployment_rows::{
    CREATED, DEPLOYMENT_COLUMNS, DeploymentRow, EnvironmentRow, EvaluationRow, EventRow,
    GATE_FAILED, Pg, ProbeRow, STATE_CHANGED, figures, holds, not_in, released, transition_failed,
};
use crate::deployments::{DeploymentStore, Release};
use crate::error::from_sqlx;
use crate::identity_rows::missing;
use crate::postgres::{PgStore, enqueue_in};
use crate::postgres_notifications::append_event;
use crate::rows::millis;

type Row = DeploymentRow<uuid::Uuid, DateTime<Utc>, serde_json::Value>;

fn to_json(v: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// One deployment; with `lock`, its row stays locked until the transaction ends.
async fn fetch(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: DeploymentId,
    lock: bool,
) -> Result<Deployment> {
    let lock = if lock { "FOR UPDATE" } else { "" };
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1 AND tenant_id = $2 {lock}"
    )))
    .bind(id.0)
    .bind(tenant.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    row.ok_or_else(|| Error::not_found(format!("deployment {id}")))?
        .decode::<Pg>()
}

#[async_trait]
impl DeploymentStore for PgStore {
    async fn put_environment(&self, env: &NewEnvironment) -> Result<Environment> {
        let row: EnvironmentRow<DateTime<Utc>, serde_json::Value> = sqlx::query_as(
            "INSERT INTO environments (tenant_id, name, pool, deploy_command, health_url, secrets,
                                       created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, now(), now())
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                 pool = excluded.pool, deploy_command = excluded.deploy_command,
                 health_url = excluded.health_url, secrets = excluded.secrets,
                 updated_at = excluded.updated_at
             RETURNING *",
        )
        .bind(env.tenant.as_str())
        .bind(&env.name)
        .bind(&env.pool)
        .bind(&env.deploy_command)
        .bind(env.health_url.as_deref())
        .bind(to_json(&env.secrets))
        .fetch_one(self.pool())
        .await
        .map_err(missing(format!("tenant {}", env.tenant)))?;
        row.decode::<Pg>()
    }

    async fn environments(&self, tenant: &TenantId) -> Result<Vec<Environment>> {
        let rows: Vec<EnvironmentRow<DateTime<Utc>, serde_json::Value>> =
            sqlx::query_as("SELECT * FROM environments WHERE tenant_id = $1 ORDER BY name")
                .bind(tenant.as_str())
                .fetch_all(self.pool())
                .await
                .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Pg>()).collect()
    }

    async fn environment(&self, tenant: &TenantId, name: &str) -> Result<Environment> {
        let row: Option<EnvironmentRow<DateTime<Utc>, serde_json::Value>> =
            sqlx::query_as("SELECT * FROM environments WHERE tenant_id = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(self.pool())
                .await
                .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format!("environment {name}")))?
            .decode::<Pg>()
    }

    async fn create_deployment(&self, new: &NewDeployment) -> Result<Deployment> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO deployments (id, tenant_id, service, version, staging_environment,
                                      environment, state, guard, created_by, created_at,
                                      updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), now())
             RETURNING {DEPLOYMENT_COLUMNS}"
        )))
        .bind(DeploymentId::new().0)
        .bind(new.tenant.as_str())
        .bind(&new.service)
        .bind(&new.version)
        .bind(&new.staging_environment)
        .bind(&new.environment)
        .bind(DeploymentState::Pending.as_i16())
        .bind(to_json(&new.guard))
        .bind(&new.created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(missing(format!("tenant {}", new.tenant)))?;
        let d = row.decode::<Pg>()?;
        append_event(&mut tx, &d, STATE_CHANGED, None, CREATED).await?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(d)
    }

    async fn deployment(&self, tenant: &TenantId, id: DeploymentId) -> Result<Deployment> {
        let mut conn = self.pool().acquire().await.map_err(from_sqlx)?;
        fetch(&mut conn, tenant, id, false).await
    }

    async fn list_deployments(
        &self,
        tenant: &TenantId,
        filter: &DeploymentFilter,
    ) -> Result<Vec<Deployment>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments
             WHERE tenant_id = $1
               AND ($2 IS NULL OR service = $2)
               AND ($3 IS NULL OR state = $3)
               AND ($4 IS NULL OR environment = $4 OR staging_environment = $4)
               AND ($5 IS NULL OR id < $5)
             ORDER BY id DESC LIMIT $6"
        )))
        .bind(tenant.as_str())
        .bind(filter.service.as_deref())
        .bind(filter.state.map(DeploymentState::as_i16))
        .bind(filter.environment.as_deref())
        .bind(filter.after.map(|a| a.0))
        .bind(i64::from(filter.limit))
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Pg>()).collect()
    }

    async fn transition(&self, change: &Transition) -> Result<(Deployment, Option<Job>)> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        let current = fetch(&mut tx, &change.tenant, change.id, true).await?;
        if current.state != change.from {
            return Err(not_in(&current, change));
        }
        let job = match &change.step {
            Some((_, new_job)) => enqueue_in(&mut tx, std::slice::from_ref(new_job))
                .await?
                .pop(),
            None => None,
        };
        let env = holds(&current, change.to);
        let guarding = change.to == DeploymentState::Guarding;
        let g = &current.guard;
        let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE deployments SET
                 state = $3, holds = $4,
                 step = COALESCE($5, step), step_job = COALESCE($6, step_job),
                 previous_version = COALESCE($7, previous_version),
                 rollback_version = COALESCE($8, rollback_version),
                 reason = COALESCE($9, reason),
                 guard_started_at = CASE WHEN $10 THEN now() ELSE guard_started_at END,
                 guard_ends_at = CASE WHEN $10 THEN now() + $12 * interval '1 millisecond'
                                      ELSE guard_ends_at END,
                 next_evaluation_at = CASE WHEN $10 THEN now() + $13 * interval '1 millisecond'
                                           ELSE NULL END,
                 next_probe_at = CASE WHEN $10 THEN now() ELSE NULL END,
                 finished_at = CASE WHEN $11 THEN now() ELSE NULL END,
                 updated_at = now()
             WHERE id = $1 AND tenant_id = $2
             RETURNING {DEPLOYMENT_COLUMNS}"
        )))
        .bind(change.id.0)
        .bind(change.tenant.as_str())
        .bind(change.to.as_i16())
        .bind(env.as_deref())
        .bind(change.step.as_ref().map(|(kind, _)| kind.as_i16()))
        .bind(job.as_ref().map(|j| j.id.0))
        .bind(change.previous_version.as_deref())
        .bind(change.rollback_version.as_deref())
        .bind(change.reason.as_deref())
        .bind(guarding)
        .bind(change.to.is_terminal())
        .bind(millis(g.window))
        .bind(millis(g.interval))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| transition_failed(&current, env.as_deref(), from_sqlx(e)))?;
        let d = row.decode::<Pg>()?;
        if let Some(version) = released(&d, change) {
            sqlx::query(
                "INSERT INTO releases (tenant_id, environment, service, version, deployment_id, at)
                 VALUES ($1, $2, $3, $4, $5, now())",
            )
            .bind(d.tenant.as_str())
            .bind(&d.environment)
            .bind(&d.service)
            .bind(version)
            .bind(d.id.0)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        }
        if let Some(why) = &change.gate_failure {
            append_event(&mut tx, &d, GATE_FAILED, None, why).await?;
        }
        append_event(
            &mut tx,
            &d,
            STATE_CHANGED,
            Some(change.from),
            &change.message,
        )
        .await?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok((d, job))
    }

    async fn current_release(
        &self,
        tenant: &TenantId,
        service: &str,
        environment: &str,
    ) -> Result<Option<Release>> {
        let row: Option<(String, uuid::Uuid)> = sqlx::query_as(
            "SELECT version, deployment_id FROM releases
             WHERE tenant_id = $1 AND service = $2 AND environment = $3
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(service)
        .bind(environment)
        .fetch_optional(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(row.map(|(version, id)| Release {
            version,
            deployment: DeploymentId(id),
        }))
    }

    async fn finished_steps(&self, limit: u32) -> Result<Vec<(Deployment, Job)>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d
             WHERE d.state IN ($1, $2, $3)
               AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = d.step_job AND j.state IN ($4, $5, $6))
             LIMIT $7"
        )))
        .bind(DeploymentState::Staging.as_i16())
        .bind(DeploymentState::Promoting.as_i16())
        .bind(DeploymentState::RollingBack.as_i16())
        .bind(JobState::Completed.as_i16())
        .bind(JobState::DeadLettered.as_i16())
        .bind(JobState::Cancelled.as_i16())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let d = row.decode::<Pg>()?;
            if let Some(job_id) = d.step_job {
                let job = crate::QueueStore::get(self, &d.tenant, job_id).await?;
                out.push((d, job));
            }
        }
        Ok(out)
    }

    async fn due_guards(&self, limit: u32) -> Result<Vec<Deployment>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments
             WHERE state = $1 AND (next_evaluation_at <= now() OR next_probe_at <= now())
             ORDER BY next_evaluation_at LIMIT $2"
        )))
        .bind(DeploymentState::Guarding.as_i16())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Pg>()).collect()
    }

    async fn take_probe(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
        interval: Duration,
        probe: Option<NewJob>,
    ) -> Result<Option<Job>> {
        let mut tx = self.pool().begin().await.map_err(from_sqlx)?;
        let taken = sqlx::query(
            "UPDATE deployments SET next_probe_at = now() + $3 * interval '1 millisecond'
             WHERE id = $1 AND tenant_id = $2 AND state = $4 AND next_probe_at <= now()",
        )
        .bind(id.0)
        .bind(tenant.as_str())
        .bind(millis(interval))
        .bind(DeploymentState::Guarding.as_i16())
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .rows_affected()
            == 1;
        let job = match (taken, probe) {
            (true, Some(probe)) => {
                let job = enqueue_in(&mut tx, &[probe]).await?.pop();
                if let Some(job) = &job {
                    sqlx::query(
                        "INSERT INTO deployment_probes (deployment_id, job_id, at) VALUES ($1, $2, now())",
                    )
                    .bind(id.0)
                    .bind(job.id.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(from_sqlx)?;
                }
                job
            }
            (true, None) | (false, _) => None,
        };
        tx.commit().await.map_err(from_sqlx)?;
        Ok(job)
    }

    async fn take_evaluation(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
        interval: Duration,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE deployments SET next_evaluation_at = now() + $3 * interval '1 millisecond'
             WHERE id = $1 AND tenant_id = $2 AND state = $4 AND next_evaluation_at <= now()",
        )
        .bind(id.0)
        .bind(tenant.as_str())
        .bind(millis(interval))
        .bind(DeploymentState::Guarding.as_i16())
        .execute(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_evaluation(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
        verdict: Verdict,
        gates: &[GateResult],
        inputs: &serde_json::Value,
    ) -> Result<Evaluation> {
        let row: Option<EvaluationRow<uuid::Uuid, DateTime<Utc>, serde_json::Value>> =
            sqlx::query_as(
                "INSERT INTO gate_evaluations (deployment_id, verdict, gates, inputs, at)
             SELECT id, $3, $4, $5, now() FROM deployments WHERE id = $1 AND tenant_id = $2
             RETURNING seq, deployment_id, verdict, gates, at",
            )
            .bind(id.0)
            .bind(tenant.as_str())
            .bind(verdict.as_i16())
            .bind(to_json(&gates))
            .bind(to_json(inputs))
            .fetch_optional(self.pool())
            .await
            .map_err(from_sqlx)?;
        row.ok_or_else(|| Error::not_found(format!("deployment {id}")))?
            .decode::<Pg>()
    }

    async fn evaluations(&self, tenant: &TenantId, id: DeploymentId) -> Result<Vec<Evaluation>> {
        let rows: Vec<EvaluationRow<uuid::Uuid, DateTime<Utc>, serde_json::Value>> =
            sqlx::query_as(
                "SELECT e.seq, e.deployment_id, e.verdict, e.gates, e.at
             FROM gate_evaluations e JOIN deployments d ON d.id = e.deployment_id
             WHERE e.deployment_id = $1 AND d.tenant_id = $2 ORDER BY e.seq",
            )
            .bind(id.0)
            .bind(tenant.as_str())
            .fetch_all(self.pool())
            .await
            .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Pg>()).collect()
    }

    async fn version_figures(
        &self,
        tenant: &TenantId,
        service: &str,
        version: &str,
        lookback: Duration,
        until: Option<DateTime<Utc>>,
    ) -> Result<VersionFigures> {
        let jobs: Vec<(i16, Option<DateTime<Utc>>, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT state, started_at, finished_at FROM jobs
             WHERE tenant_id = $1 AND tags ? 'service' AND tags ->> 'service' = $2
               AND tags ->> 'version' = $3
               AND finished_at > COALESCE($5, now()) - $4 * interval '1 millisecond'
               AND finished_at <= COALESCE($5, now()) AND state IN ($6, $7)",
        )
        .bind(tenant.as_str())
        .bind(service)
        .bind(version)
        .bind(millis(lookback))
        .bind(until)
        .bind(JobState::Completed.as_i16())
        .bind(JobState::DeadLettered.as_i16())
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        let signals: Vec<(i64, i64, Option<f64>)> = sqlx::query_as(
            "SELECT requests, errors, latency_ms FROM service_signals
             WHERE tenant_id = $1 AND service = $2 AND version = $3
               AND at > COALESCE($5, now()) - $4 * interval '1 millisecond'
               AND at <= COALESCE($5, now())",
        )
        .bind(tenant.as_str())
        .bind(service)
        .bind(version)
        .bind(millis(lookback))
        .bind(until)
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        let seen: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM service_signals
                            WHERE tenant_id = $1 AND service = $2 AND version = $3)",
        )
        .bind(tenant.as_str())
        .bind(service)
        .bind(version)
        .fetch_one(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(figures(&jobs, &signals, seen))
    }

    async fn last_finished(
        &self,
        tenant: &TenantId,
        service: &str,
        version: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar(
            "SELECT max(finished_at) FROM jobs
             WHERE tenant_id = $1 AND tags ? 'service' AND tags ->> 'service' = $2
               AND tags ->> 'version' = $3 AND state IN ($4, $5)",
        )
        .bind(tenant.as_str())
        .bind(service)
        .bind(version)
        .bind(JobState::Completed.as_i16())
        .bind(JobState::DeadLettered.as_i16())
        .fetch_one(self.pool())
        .await
        .map_err(from_sqlx)
    }

    async fn probes(
        &self,
        tenant: &TenantId,
        id: DeploymentId,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProbeResult>> {
        let rows: Vec<ProbeRow<DateTime<Utc>>> = sqlx::query_as(
            "SELECT j.state, p.at FROM deployment_probes p JOIN jobs j ON j.id = p.job_id
             WHERE p.deployment_id = $1 AND j.tenant_id = $2 AND p.at >= $3
               AND j.state IN ($4, $5, $6)
             ORDER BY p.at",
        )
        .bind(id.0)
        .bind(tenant.as_str())
        .bind(since)
        .bind(JobState::Completed.as_i16())
        .bind(JobState::DeadLettered.as_i16())
        .bind(JobState::Cancelled.as_i16())
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Pg>()).collect()
    }

    async fn report_signal(&self, signal: &Signal) -> Result<()> {
        sqlx::query(
            "INSERT INTO service_signals (tenant_id, service, version, requests, errors, latency_ms, at)
             VALUES ($1, $2, $3, $4, $5, $6, now())",
        )
        .bind(signal.tenant.as_str())
        .bind(&signal.service)
        .bind(&signal.version)
        .bind(i64::try_from(signal.requests).unwrap_or(i64::MAX))
        .bind(i64::try_from(signal.errors).unwrap_or(i64::MAX))
        .bind(signal.latency_ms)
        .execute(self.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }

    async fn events(
        &self,
        tenant: &TenantId,
        deployment: Option<DeploymentId>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeploymentEvent>> {
        let rows: Vec<EventRow<uuid::Uuid, DateTime<Utc>>> = sqlx::query_as(
            "SELECT seq, tenant_id, deployment_id, kind, state, from_state, message, at
             FROM deployment_events
             WHERE tenant_id = $1 AND ($2 IS NULL OR deployment_id = $2) AND seq > $3
             ORDER BY seq LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(deployment.map(|d| d.0))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        rows.into_iter().map(|r| r.decode::<Pg>()).collect()
    }

    async fn summary(&self, tenant: &TenantId) -> Result<Summary> {
        let jobs: Vec<(i16, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM jobs WHERE tenant_id = $1 GROUP BY state")
                .bind(tenant.as_str())
                .fetch_all(self.pool())
                .await
                .map_err(from_sqlx)?;
        let deployments: Vec<(i16, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM deployments WHERE tenant_id = $1 GROUP BY state",
        )
        .bind(tenant.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(from_sqlx)?;
        crate::deployment_rows::summary(&jobs, &deployments)
    }

    async fn deployments_by_state(&self) -> Result<BTreeMap<String, u64>> {
        let rows: Vec<(i16, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM deployments GROUP BY state")
                .fetch_all(self.pool())
                .await
                .map_err(from_sqlx)?;
        crate::deployment_rows::deployment_counts(&rows)
    }
}
