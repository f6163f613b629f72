//! `switchyard.v1.QueueService` over [`switchyard_core::Queue`]. Every handler is the same
//! three steps: take the [`Principal`] the authentication layer put in the request extensions,
//! convert the message (a bad one is `INVALID_ARGUMENT`), call core and convert the answer back
//! (a domain error becomes its status through [`to_status`]). No domain logic lives here.

use switchyard_core::{Queue, TailEvent};
use switchyard_proto::convert::{job_id, outcome_from_pb, priority_from_pb, required};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::queue_service_server::QueueService;
use switchyard_types::{Job, JobId, Principal};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::error::to_status;
use crate::request;

/// The gRPC face of the job queue. Mount it with
/// `pb::queue_service_server::QueueServiceServer::new(QueueGrpc::new(queue))` behind an
/// authentication layer that inserts a [`Principal`] (see [`crate::GrpcApi`]).
#[derive(Clone)]
pub struct QueueGrpc {
    queue: Queue,
}

impl QueueGrpc {
    /// Serves `queue`.
    pub fn new(queue: Queue) -> Self {
        QueueGrpc { queue }
    }
}

/// Splits a request into its caller and its message. No principal means the request did not go
/// through authentication: `UNAUTHENTICATED`.
pub(crate) fn take<T>(request: Request<T>) -> Result<(Principal, T), Status> {
    let who = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credentials"))?;
    Ok((who, request.into_inner()))
}

/// The server side of a `TailJobLogs` stream.
pub type TailStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::TailJobLogsResponse, Status>> + Send>,
>;

/// The `job_id` field of a request.
fn id(value: &str) -> Result<JobId, Status> {
    job_id(value, "job_id").map_err(to_status)
}

/// One job as a response's `job` field.
fn one(job: Job) -> Option<pb::Job> {
    Some(job.into())
}

/// Many jobs as a response's `jobs` field.
fn many(jobs: Vec<Job>) -> Vec<pb::Job> {
    jobs.into_iter().map(pb::Job::from).collect()
}

#[tonic::async_trait]
impl QueueService for QueueGrpc {
    type TailJobLogsStream = TailStream;

    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        let (who, req) = take(request)?;
        let jobs = request::enqueue(req).map_err(to_status)?;
        let jobs = self.queue.enqueue(&who, jobs).await.map_err(to_status)?;
        Ok(Response::new(pb::EnqueueResponse { jobs: many(jobs) }))
    }

    async fn claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        let (who, req) = take(request)?;
        let jobs = self
            .queue
            .claim(&who, request::claim(req))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ClaimResponse { jobs: many(jobs) }))
    }

    async fn start_job(
        &self,
        request: Request<pb::StartJobRequest>,
    ) -> Result<Response<pb::StartJobResponse>, Status> {
        let (who, req) = take(request)?;
        let job = self
            .queue
            .start(&who, id(&req.job_id)?, req.attempt)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::StartJobResponse { job: one(job) }))
    }

    async fn extend_lease(
        &self,
        request: Request<pb::ExtendLeaseRequest>,
    ) -> Result<Response<pb::ExtendLeaseResponse>, Status> {
        let (who, req) = take(request)?;
        let job = self
            .queue
            .extend_lease(&who, id(&req.job_id)?, req.attempt, req.lease_seconds)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ExtendLeaseResponse { job: one(job) }))
    }

    async fn complete_job(
        &self,
        request: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let (who, req) = take(request)?;
        let outcome = outcome_from_pb(req.outcome).map_err(to_status)?;
        let job = self
            .queue
            .complete(&who, id(&req.job_id)?, req.attempt, outcome)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CompleteJobResponse { job: one(job) }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let (who, req) = take(request)?;
        let job = self
            .queue
            .cancel(&who, id(&req.job_id)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CancelJobResponse { job: one(job) }))
    }

    async fn set_priority(
        &self,
        request: Request<pb::SetPriorityRequest>,
    ) -> Result<Response<pb::SetPriorityResponse>, Status> {
        let (who, req) = take(request)?;
        let priority = priority_from_pb(req.priority, "priority")
            .and_then(|p| required(p, "priority"))
            .map_err(to_status)?;
        let job = self
            .queue
            .set_priority(&who, id(&req.job_id)?, priority)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SetPriorityResponse { job: one(job) }))
    }

    async fn redrive_job(
        &self,
        request: Request<pb::RedriveJobRequest>,
    ) -> Result<Response<pb::RedriveJobResponse>, Status> {
        let (who, req) = take(request)?;
        let job = self
            .queue
            .redrive(&who, id(&req.job_id)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RedriveJobResponse { job: one(job) }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let (who, req) = take(request)?;
        let job = self
            .queue
            .get(&who, id(&req.job_id)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetJobResponse { job: one(job) }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let (who, req) = take(request)?;
        let list = request::list(req).map_err(to_status)?;
        let page = self.queue.list(&who, list).await.map_err(to_status)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: many(page.items),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let (who, _) = take(request)?;
        let stats = self.queue.stats(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::GetStatsResponse {
            stats: stats.into_iter().map(pb::PoolStats::from).collect(),
        }))
    }

    async fn get_limits(
        &self,
        request: Request<pb::GetLimitsRequest>,
    ) -> Result<Response<pb::GetLimitsResponse>, Status> {
        let (who, _) = take(request)?;
        let max_running = self.queue.running_limit(&who).await.map_err(to_status)?;
        Ok(Response::new(pb::GetLimitsResponse { max_running }))
    }

    async fn set_limits(
        &self,
        request: Request<pb::SetLimitsRequest>,
    ) -> Result<Response<pb::SetLimitsResponse>, Status> {
        let (who, req) = take(request)?;
        let max_running = self
            .queue
            .set_running_limit(&who, req.max_running)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SetLimitsResponse { max_running }))
    }

    async fn get_job_logs(
        &self,
        request: Request<pb::GetJobLogsRequest>,
    ) -> Result<Response<pb::GetJobLogsResponse>, Status> {
        let (who, req) = take(request)?;
        let limit = (req.limit != 0).then_some(req.limit);
        let chunks = self
            .queue
            .logs(&who, id(&req.job_id)?, req.attempt, req.after_seq, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetJobLogsResponse {
            chunks: chunks.into_iter().map(Into::into).collect(),
        }))
    }

    async fn tail_job_logs(
        &self,
        request: Request<pb::TailJobLogsRequest>,
    ) -> Result<Response<TailStream>, Status> {
        let (who, req) = take(request)?;
        let tail = self
            .queue
            .tail_logs(&who, id(&req.job_id)?, req.attempt)
            .await
            .map_err(to_status)?;
        // The stream ends (OK) after the end event; a store failure ends it with its status.
        let chunks = tail.map_while(|event| match event {
            Ok(TailEvent::Chunk(chunk)) => Some(Ok(pb::TailJobLogsResponse {
                chunk: Some(chunk.into()),
            })),
            Ok(TailEvent::End(_)) => None,
            Err(e) => Some(Err(to_status(e))),
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn requeue_expired(
        &self,
        request: Request<pb::RequeueExpiredRequest>,
    ) -> Result<Response<pb::RequeueExpiredResponse>, Status> {
        let (who, _) = take(request)?;
        let report = self.queue.requeue_expired(&who).await.map_err(to_status)?;
        Ok(Response::new(report.into()))
    }
}
