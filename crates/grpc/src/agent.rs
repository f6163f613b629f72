//! `switchyard.v1.AgentService` over [`switchyard_core::Agents`]: the `Connect` stream converted
//! message by message between `switchyard.v1` and the core's [`FromAgent`] / [`ToAgent`], and
//! the registry reads. No domain logic lives here.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use switchyard_auth::{Enrollments, Secret};
use switchyard_core::{Agents, FromAgent, Hello, ToAgent};
use switchyard_proto::convert::{agent_status_from_pb, job_id};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::agent_service_server::AgentService;
use switchyard_types::{Error, Outcome, PoolScale, Result, SpiffeId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::to_status;
use crate::queue::take;

/// The gRPC face of the agents service.
#[derive(Clone)]
pub struct AgentGrpc {
    agents: Agents,
    enrollments: Enrollments,
}

impl AgentGrpc {
    /// Serves `agents`, enrolling them through `enrollments`.
    pub fn new(agents: Agents, enrollments: Enrollments) -> Self {
        AgentGrpc {
            agents,
            enrollments,
        }
    }
}

/// An id field of a request.
fn uuid_field(value: &str, field: &str) -> Result<uuid::Uuid, Status> {
    value
        .parse()
        .map_err(|_| to_status(Error::invalid(field, "is not a valid id (UUID)")))
}

/// Reads one agent message off the wire.
fn from_pb(message: pb::ConnectRequest) -> Result<FromAgent> {
    use pb::connect_request::Body;
    let held = |id: &str, field: &str| job_id(id, field);
    match message.body {
        None => Err(Error::invalid("body", "is required")),
        Some(Body::Hello(h)) => Ok(FromAgent::Hello(Hello {
            name: h.name,
            pool: h.pool,
            labels: h.labels,
            capacity: h.capacity,
            running: h
                .running
                .iter()
                .map(|j| Ok((held(&j.job_id, "hello.running.job_id")?, j.attempt)))
                .collect::<Result<_>>()?,
            version: h.version,
        })),
        Some(Body::Heartbeat(_)) => Ok(FromAgent::Heartbeat),
        Some(Body::Credits(c)) => Ok(FromAgent::Credits(c.add)),
        Some(Body::Started(s)) => Ok(FromAgent::Started(
            held(&s.job_id, "started.job_id")?,
            s.attempt,
        )),
        Some(Body::Log(l)) => Ok(FromAgent::Log(
            held(&l.job_id, "log.job_id")?,
            l.attempt,
            l.seq,
            l.data,
        )),
        Some(Body::Renew(r)) => Ok(FromAgent::Renew(r.csr)),
        Some(Body::Progress(p)) => Ok(FromAgent::Progress(
            held(&p.job_id, "progress.job_id")?,
            p.attempt,
            // Anything over 100 is refused by the core, as it says.
            u8::try_from(p.percent).unwrap_or(u8::MAX),
        )),
        Some(Body::Finished(f)) => {
            let outcome = if f.succeeded {
                Outcome::Succeeded {
                    exit_code: f.exit_code,
                    result: None,
                }
            } else {
                Outcome::Failed {
                    exit_code: f.exit_code,
                    error: f.error,
                }
            };
            Ok(FromAgent::Finished(
                held(&f.job_id, "finished.job_id")?,
                f.attempt,
                outcome,
            ))
        }
    }
}

/// Writes one server message to the wire.
fn to_pb(message: ToAgent) -> pb::ConnectResponse {
    use pb::connect_response::Body;
    let seconds = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let body = match message {
        ToAgent::Welcome {
            agent_id,
            heartbeat_interval,
            lease,
        } => Body::Welcome(pb::Welcome {
            agent_id: agent_id.to_string(),
            heartbeat_interval_seconds: seconds(heartbeat_interval),
            lease_seconds: seconds(lease),
        }),
        ToAgent::Assign {
            job,
            artifact_grant,
        } => Body::Assign(pb::Assign {
            job: Some((*job).into()),
            artifact_grant: artifact_grant.unwrap_or_default(),
        }),
        ToAgent::Cancel(id, attempt) => Body::Cancel(pb::Cancel {
            job_id: id.to_string(),
            attempt,
        }),
        ToAgent::LeaseLost(id, attempt, reason) => Body::LeaseLost(pb::LeaseLost {
            job_id: id.to_string(),
            attempt,
            reason,
        }),
        ToAgent::Drain(reason) => Body::Drain(pb::Drain { reason }),
        ToAgent::HeartbeatAck(renewed) => Body::HeartbeatAck(pb::HeartbeatAck { renewed }),
        ToAgent::Certificate(c) => Body::Certificate((*c).into()),
    };
    pb::ConnectResponse { body: Some(body) }
}

/// The server side of a `Connect` stream.
type ConnectStream = Pin<Box<dyn Stream<Item = Result<pb::ConnectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentGrpc {
    type ConnectStream = ConnectStream;

    async fn connect(
        &self,
        request: Request<Streaming<pb::ConnectRequest>>,
    ) -> Result<Response<ConnectStream>, Status> {
        let certified = request.extensions().get::<SpiffeId>().cloned();
        let (who, inbound) = take(request)?;
        let inbound = inbound.map(|message| match message {
            Ok(message) => from_pb(message),
            Err(status) => Err(Error::unavailable(format!(
                "the agent's stream broke: {}",
                status.message()
            ))),
        });
        let (wire_tx, wire_rx) = mpsc::channel::<Result<pb::ConnectResponse, Status>>(64);
        let agents = self.agents.clone();
        tokio::spawn(async move {
            let (tx, mut rx) = mpsc::channel::<ToAgent>(64);
            let serve = agents.serve(who, certified, Box::pin(inbound), tx);
            tokio::pin!(serve);
            let ended = loop {
                tokio::select! {
                    biased;
                    Some(message) = rx.recv() => {
                        // If the agent is gone, `serve` sees its inbound side end.
                        let _ = wire_tx.send(Ok(to_pb(message))).await;
                    }
                    ended = &mut serve => break ended,
                }
            };
            while let Ok(message) = rx.try_recv() {
                let _ = wire_tx.send(Ok(to_pb(message))).await;
            }
            if let Err(e) = ended {
                let _ = wire_tx.send(Err(to_status(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(wire_rx))))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let (who, req) = take(request)?;
        let agents = self
            .agents
            .list(&who, req.pool.as_deref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        let (who, req) = take(request)?;
        let id = uuid_field(&req.id, "id")?;
        let agent = self.agents.get(&who, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetAgentResponse {
            agent: Some(agent.into()),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let certified = request.extensions().get::<SpiffeId>().cloned();
        let (who, req) = take(request)?;
        let id = (!req.agent_id.is_empty())
            .then(|| uuid_field(&req.agent_id, "agent_id"))
            .transpose()?;
        let agent = self
            .agents
            .heartbeat(&who, certified.as_ref(), id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::HeartbeatResponse {
            agent: Some(agent.into()),
        }))
    }

    async fn set_agent_status(
        &self,
        request: Request<pb::SetAgentStatusRequest>,
    ) -> Result<Response<pb::SetAgentStatusResponse>, Status> {
        let (who, req) = take(request)?;
        let id = uuid_field(&req.id, "id")?;
        let status = agent_status_from_pb(req.status, "status").map_err(to_status)?;
        let agent = self
            .agents
            .set_status(&who, id, status)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SetAgentStatusResponse {
            agent: Some(agent.into()),
        }))
    }

    async fn list_pools(
        &self,
        request: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let (who, _) = take(request)?;
        let pools = self.agents.pools(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools: pools.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_pool(
        &self,
        request: Request<pb::GetPoolRequest>,
    ) -> Result<Response<pb::GetPoolResponse>, Status> {
        let (who, req) = take(request)?;
        let pool = self.agents.pool(&who, &req.name).await.map_err(to_status)?;
        Ok(Response::new(pb::GetPoolResponse {
            pool: Some(pool.into()),
        }))
    }

    async fn scale_pool(
        &self,
        request: Request<pb::ScalePoolRequest>,
    ) -> Result<Response<pb::ScalePoolResponse>, Status> {
        let (who, req) = take(request)?;
        let change = PoolScale {
            min_agents: req.min_agents,
            max_agents: req.max_agents,
            target_agents: req.target_agents,
            follow_demand: req.follow_demand,
        };
        let pool = self
            .agents
            .scale(&who, &req.name, &change)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ScalePoolResponse {
            pool: Some(pool.into()),
        }))
    }

    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let req = request.into_inner();
        let enrolled = self
            .enrollments
            .enroll(&Secret::new(req.token), &req.name, req.labels, &req.csr)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::EnrollResponse {
            agent: Some(enrolled.agent.into()),
            certificate: Some(enrolled.certificate.into()),
        }))
    }

    async fn deregister_agent(
        &self,
        request: Request<pb::DeregisterAgentRequest>,
    ) -> Result<Response<pb::DeregisterAgentResponse>, Status> {
        let (who, req) = take(request)?;
        let id = uuid_field(&req.id, "id")?;
        let agent = self.agents.deregister(&who, id).await.map_err(to_status)?;
        Ok(Response::new(pb::DeregisterAgentResponse {
            agent: Some(agent.into()),
        }))
    }

    async fn create_registration_token(
        &self,
        request: Request<pb::CreateRegistrationTokenRequest>,
    ) -> Result<Response<pb::CreateRegistrationTokenResponse>, Status> {
        let (who, req) = take(request)?;
        let ttl = req
            .ttl_seconds
            .map(|s| std::time::Duration::from_secs(s.into()));
        let (stored, token) = self
            .enrollments
            .create_token(&who, &req.pool, ttl)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateRegistrationTokenResponse {
            registration_token: Some(stored.into()),
            token: token.expose().to_owned(),
        }))
    }

    async fn list_registration_tokens(
        &self,
        request: Request<pb::ListRegistrationTokensRequest>,
    ) -> Result<Response<pb::ListRegistrationTokensResponse>, Status> {
        let (who, _) = take(request)?;
        let tokens = self
            .enrollments
            .list_tokens(&who)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListRegistrationTokensResponse {
            registration_tokens: tokens.into_iter().map(Into::into).collect(),
        }))
    }

    async fn revoke_registration_token(
        &self,
        request: Request<pb::RevokeRegistrationTokenRequest>,
    ) -> Result<Response<pb::RevokeRegistrationTokenResponse>, Status> {
        let (who, req) = take(request)?;
        let id = uuid_field(&req.id, "id")?;
        let token = self
            .enrollments
            .revoke_token(&who, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RevokeRegistrationTokenResponse {
            registration_token: Some(token.into()),
        }))
    }
}
