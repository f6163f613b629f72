//! `switchyard.v1.AgentService` over [`switchyard_core::Agents`]: the `Connect` stream converted
//! message by message between `switchyard.v1` and the core's [`FromAgent`] / [`ToAgent`], and
//! the registry reads. No domain logic lives here.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use switchyard_core::{Agents, FromAgent, Hello, ToAgent};
use switchyard_proto::convert::job_id;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::agent_service_server::AgentService;
use switchyard_types::{Error, Outcome, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::to_status;
use crate::queue::take;

/// The gRPC face of the agents service.
#[derive(Clone)]
pub struct AgentGrpc {
    agents: Agents,
}

impl AgentGrpc {
    /// Serves `agents`.
    pub fn new(agents: Agents) -> Self {
        AgentGrpc { agents }
    }
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
        ToAgent::Assign(job) => Body::Assign(pb::Assign {
            job: Some((*job).into()),
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
            let serve = agents.serve(who, Box::pin(inbound), tx);
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
        let id = req
            .id
            .parse()
            .map_err(|_| to_status(Error::invalid("id", "is not a valid agent id (UUID)")))?;
        let agent = self.agents.get(&who, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetAgentResponse {
            agent: Some(agent.into()),
        }))
    }
}
