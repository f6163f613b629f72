//! `switchyard.v1.DeploymentService` over [`switchyard_core::Deployments`]: take the
//! [`switchyard_types::Principal`], convert, call core, convert back. No domain logic here.

use switchyard_core::{
    CreateDeployment, Deployments, GuardChange, ListDeployments, Plan, PutEnvironment,
};
use switchyard_proto::convert::{deployment_state_from_pb, required};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::deployment_service_server::DeploymentService;
use switchyard_types::{DeploymentId, WebhookId};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::error::to_status;
use crate::queue::take;

/// The gRPC face of deployments; mount it behind the authentication layer (see
/// [`crate::GrpcApi::with_deployments`]).
#[derive(Clone)]
pub struct DeploymentGrpc {
    deployments: Deployments,
}

impl DeploymentGrpc {
    /// Serves `deployments`.
    pub fn new(deployments: Deployments) -> Self {
        DeploymentGrpc { deployments }
    }
}

/// The server side of a `WatchDeployments` stream.
pub type WatchStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::WatchDeploymentsResponse, Status>> + Send>,
>;

/// A request's deployment id, reported against `field`.
fn id(value: &str, field: &str) -> Result<DeploymentId, Status> {
    value.parse::<uuid::Uuid>().map(DeploymentId).map_err(|_| {
        to_status(switchyard_types::Error::invalid(
            field,
            "is not a valid deployment id (UUID)",
        ))
    })
}

/// `0` on the wire means "the default".
fn set(n: u64) -> Option<u64> {
    (n != 0).then_some(n)
}

fn guard_change(g: Option<pb::GuardSettings>) -> GuardChange {
    let g = g.unwrap_or_default();
    GuardChange {
        window_seconds: set(g.window_seconds),
        interval_seconds: set(g.interval_seconds),
        lookback_seconds: set(g.lookback_seconds),
        probe_interval_seconds: set(g.probe_interval_seconds),
        health_grace_seconds: set(g.health_grace_seconds),
        min_samples: g.min_samples,
        max_failure_rate: g.max_failure_rate,
        max_latency_ratio: g.max_latency_ratio,
    }
}

fn plan(p: Plan) -> Option<pb::DeploymentPlan> {
    Some(pb::DeploymentPlan {
        step: pb::DeploymentStep::from(p.step).into(),
        executed: p.executed,
        from: pb::DeploymentState::from(p.from).into(),
        to: pb::DeploymentState::from(p.to).into(),
        environment: p.environment,
        pool: p.pool,
        version: p.version,
        replaces: p.replaces,
        command: p.command,
        deployment: Some(p.deployment.into()),
        job_id: p.job.map(|j| j.id.to_string()),
    })
}

#[tonic::async_trait]
impl DeploymentService for DeploymentGrpc {
    type WatchDeploymentsStream = WatchStream;

    async fn put_environment(
        &self,
        request: Request<pb::PutEnvironmentRequest>,
    ) -> Result<Response<pb::PutEnvironmentResponse>, Status> {
        let (who, req) = take(request)?;
        let env = required(req.environment, "environment").map_err(to_status)?;
        let stored = self
            .deployments
            .put_environment(
                &who,
                PutEnvironment {
                    name: env.name,
                    pool: env.pool,
                    deploy_command: env.deploy_command,
                    health_url: env.health_url,
                    secrets: env.secrets,
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::PutEnvironmentResponse {
            environment: Some(stored.into()),
        }))
    }

    async fn list_environments(
        &self,
        request: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        let (who, _) = take(request)?;
        let found = self
            .deployments
            .environments(&who)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments: found.into_iter().map(Into::into).collect(),
        }))
    }

    async fn create_deployment(
        &self,
        request: Request<pb::CreateDeploymentRequest>,
    ) -> Result<Response<pb::CreateDeploymentResponse>, Status> {
        let (who, req) = take(request)?;
        let created = self
            .deployments
            .create(
                &who,
                CreateDeployment {
                    service: req.service,
                    version: req.version,
                    environment: req.environment,
                    staging_environment: req.staging_environment,
                    guard: guard_change(req.guard),
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateDeploymentResponse {
            deployment: Some(created.into()),
        }))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::GetDeploymentResponse>, Status> {
        let (who, req) = take(request)?;
        let found = self
            .deployments
            .get(&who, id(&req.id, "id")?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetDeploymentResponse {
            deployment: Some(found.into()),
        }))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let (who, req) = take(request)?;
        let page = self
            .deployments
            .list(
                &who,
                ListDeployments {
                    service: req.service,
                    state: deployment_state_from_pb(req.state, "state").map_err(to_status)?,
                    environment: req.environment,
                    limit: (req.page_size != 0).then_some(req.page_size),
                    page_token: Some(req.page_token).filter(|t| !t.is_empty()),
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn stage_deployment(
        &self,
        request: Request<pb::StageDeploymentRequest>,
    ) -> Result<Response<pb::StageDeploymentResponse>, Status> {
        let (who, req) = take(request)?;
        let started = self
            .deployments
            .stage(&who, id(&req.id, "id")?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::StageDeploymentResponse {
            plan: plan(started),
        }))
    }

    async fn promote_deployment(
        &self,
        request: Request<pb::PromoteDeploymentRequest>,
    ) -> Result<Response<pb::PromoteDeploymentResponse>, Status> {
        let (who, req) = take(request)?;
        let planned = self
            .deployments
            .promote(&who, id(&req.id, "id")?, req.execute)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::PromoteDeploymentResponse {
            plan: plan(planned),
        }))
    }

    async fn rollback_deployment(
        &self,
        request: Request<pb::RollbackDeploymentRequest>,
    ) -> Result<Response<pb::RollbackDeploymentResponse>, Status> {
        let (who, req) = take(request)?;
        let planned = self
            .deployments
            .rollback(&who, id(&req.id, "id")?, req.version, req.execute)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RollbackDeploymentResponse {
            plan: plan(planned),
        }))
    }

    async fn watch_deployments(
        &self,
        request: Request<pb::WatchDeploymentsRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let (who, req) = take(request)?;
        let one = if req.deployment_id.is_empty() {
            None
        } else {
            Some(id(&req.deployment_id, "deployment_id")?)
        };
        let events = self
            .deployments
            .watch(&who, one, req.after_seq)
            .await
            .map_err(to_status)?;
        let stream = events.map(|event| match event {
            Ok(event) => Ok(pb::WatchDeploymentsResponse {
                event: Some(event.into()),
            }),
            Err(e) => Err(to_status(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_evaluations(
        &self,
        request: Request<pb::ListEvaluationsRequest>,
    ) -> Result<Response<pb::ListEvaluationsResponse>, Status> {
        let (who, req) = take(request)?;
        let found = self
            .deployments
            .evaluations(&who, id(&req.id, "id")?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListEvaluationsResponse {
            evaluations: found.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_summary(
        &self,
        request: Request<pb::GetSummaryRequest>,
    ) -> Result<Response<pb::GetSummaryResponse>, Status> {
        let (who, _) = take(request)?;
        let summary = self.deployments.summary(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::GetSummaryResponse {
            jobs: summary.jobs,
            deployments: summary.deployments,
        }))
    }

    async fn report_signal(
        &self,
        request: Request<pb::ReportSignalRequest>,
    ) -> Result<Response<pb::ReportSignalResponse>, Status> {
        let (who, req) = take(request)?;
        self.deployments
            .report_signal(
                &who,
                req.service,
                req.version,
                req.requests,
                req.errors,
                req.latency_ms,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReportSignalResponse {}))
    }

    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::CreateWebhookResponse>, Status> {
        let (who, req) = take(request)?;
        let created = self
            .deployments
            .create_webhook(&who, req.url, req.secret)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateWebhookResponse {
            webhook: Some(created.webhook.into()),
            secret: created.secret,
        }))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let (who, _) = take(request)?;
        let found = self.deployments.webhooks(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: found.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        let (who, req) = take(request)?;
        let id = req.id.parse::<WebhookId>().map_err(to_status)?;
        let deleted = self
            .deployments
            .delete_webhook(&who, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteWebhookResponse {
            webhook: Some(deleted.into()),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let (who, req) = take(request)?;
        let found = self
            .deployments
            .notifications(&who, id(&req.deployment_id, "deployment_id")?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: found.into_iter().map(Into::into).collect(),
        }))
    }
}
