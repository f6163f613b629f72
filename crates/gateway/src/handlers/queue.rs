//! The queue routes (DESIGN §3.2). Each handler: take the caller, convert the request, call
//! `Queue`, convert the answer back. Paths are relative to the API mount (`/api`, `/api/v1`).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt as _};
use switchyard_core::TailEvent;
use switchyard_types::Error;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::dto::{
    ClaimBody, CompleteBody, EnqueueRequest, ExtendBody, JobView, Limits, ListJobsQuery,
    LogChunkView, LogsQuery, OneOrMany, PriorityBody, ReapView, StartBody, StatsView, TailQuery,
};
use crate::envelope::{ApiError, Data, ErrorEntry};
use crate::extract::{ApiJson, ApiQuery, JobIdParam};
use crate::openapi::{Failure, Success};
use crate::principal::Caller;

type Reply<T> = Result<Data<T>, ApiError>;

/// The queue routes with their OpenAPI operations.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enqueue, list_jobs))
        .routes(routes!(get_job, cancel_job))
        .routes(routes!(job_logs))
        .routes(routes!(tail_job_logs))
        .routes(routes!(start_job))
        .routes(routes!(extend_lease))
        .routes(routes!(complete_job))
        .routes(routes!(set_priority))
        .routes(routes!(retry_job))
        .routes(routes!(claim))
        .routes(routes!(stats))
        .routes(routes!(get_limits, set_limits))
        .routes(routes!(requeue_expired))
}

/// Enqueues one job, or a batch of up to 1000 in one transaction.
#[utoipa::path(post, path = "/queue/jobs", tag = "queue", request_body = EnqueueRequest,
    responses((status = 201, description = "The job, or an array of jobs for a batch", body = Success<OneOrMany>),
        (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn enqueue(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Reply<OneOrMany> {
    let (jobs, batch) = EnqueueRequest::from_json(body)?.into_jobs();
    let stored = JobView::all(state.queue.enqueue(&who, jobs).await?);
    if batch {
        return Ok(Data::created(OneOrMany::Many(stored)));
    }
    let one = stored.into_iter().next();
    let one = one.ok_or_else(|| ApiError(Error::internal("enqueue of one job returned none")))?;
    Ok(Data::created(OneOrMany::One(Box::new(one))))
}

/// Lists the caller's jobs, newest first, one page at a time.
#[utoipa::path(get, path = "/queue/jobs", tag = "queue", params(ListJobsQuery),
    responses((status = 200, description = "A page of jobs; meta.next_page_token when there are more", body = Success<Vec<JobView>>),
        (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_jobs(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiQuery(query): ApiQuery<ListJobsQuery>,
) -> Reply<Vec<JobView>> {
    let page = state.queue.list(&who, query.into_list()?).await?;
    Ok(Data::page(JobView::all(page.items), page.next_page_token))
}

/// One job.
#[utoipa::path(get, path = "/queue/jobs/{id}", tag = "queue",
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, body = Success<JobView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn get_job(
    State(state): State<AppState>,
    Caller(who): Caller,
    JobIdParam(id): JobIdParam,
) -> Reply<JobView> {
    Ok(Data::ok(state.queue.get(&who, id).await?.into()))
}

/// A page of a job's log, in attempt and sequence order (secrets masked on the agent).
#[utoipa::path(get, path = "/queue/jobs/{id}/logs", tag = "queue",
    params(("id" = String, Path, description = "Job id (UUID)"), LogsQuery),
    responses((status = 200, body = Success<Vec<LogChunkView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn job_logs(
    State(state): State<AppState>,
    Caller(who): Caller,
    JobIdParam(id): JobIdParam,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Reply<Vec<LogChunkView>> {
    let chunks = state
        .queue
        .logs(&who, id, q.attempt, q.after_seq, q.limit)
        .await?;
    Ok(Data::ok(chunks.into_iter().map(Into::into).collect()))
}

/// Follows a job's log live, as server-sent events: a `chunk` event (a `LogChunkView`) for
/// every chunk stored so far and each new one as it arrives (within about 250 ms), then one
/// `end` event (the `JobView`) once the attempt, or the job, is over; an `error` event (an
/// `ErrorEntry`) if the store fails. `curl -N` shows it as it comes.
#[utoipa::path(get, path = "/queue/jobs/{id}/logs/stream", tag = "queue",
    params(("id" = String, Path, description = "Job id (UUID)"), TailQuery),
    responses((status = 200, content_type = "text/event-stream", body = String,
               description = "`chunk` events, then one `end` event"),
               (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn tail_job_logs(
    State(state): State<AppState>,
    Caller(who): Caller,
    JobIdParam(id): JobIdParam,
    ApiQuery(q): ApiQuery<TailQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let tail = state.queue.tail_logs(&who, id, q.attempt).await?;
    let events = tail.map(|event| {
        let sse = match event {
            Ok(TailEvent::Chunk(chunk)) => Event::default()
                .event("chunk")
                .json_data(LogChunkView::from(chunk)),
            Ok(TailEvent::End(job)) => Event::default().event("end").json_data(JobView::from(*job)),
            Err(e) => {
                tracing::warn!(error = %e.message, "a log tail failed");
                Event::default().event("error").json_data(ErrorEntry {
                    code: e.kind.code().to_owned(),
                    message: e.public_message().to_owned(),
                    field: None,
                })
            }
        };
        Ok(sse.unwrap_or_else(|e| Event::default().event("error").data(e.to_string())))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Cancels a job that is not terminal yet; returns the cancelled job.
#[utoipa::path(delete, path = "/queue/jobs/{id}", tag = "queue",
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, body = Success<JobView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn cancel_job(
    State(state): State<AppState>,
    Caller(who): Caller,
    JobIdParam(id): JobIdParam,
) -> Reply<JobView> {
    Ok(Data::ok(state.queue.cancel(&who, id).await?.into()))
}

/// Reports that the current attempt started running (`CLAIMED -> RUNNING`); renews its lease.
/// A stale attempt is `409 conflict` and changes nothing.
#[utoipa::path(patch, path = "/queue/jobs/{id}/start", tag = "queue", request_body = StartBody,
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, body = Success<JobView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn start_job(
    State(state): State<AppState>,
    Caller(who): Caller,
    JobIdParam(id): JobIdParam,
    ApiJson(body): ApiJson<StartBody>,
) -> Reply<JobView> {
    Ok(Data::ok(
        state.queue.start(&who, id, body.attempt).await?.into(),
    ))
}

/// Renews the current attempt's lease.
#[utoipa::path(patch, path = "/queue/jobs/{id}/extend", tag = "queue", request_body = ExtendBody,
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, body = Success<JobView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn extend_lease(
    State(state): State<AppState>,
    Caller(who): Caller,
    JobIdParam(id): JobIdParam,
    ApiJson(body): ApiJson<ExtendBody>,
) -> Reply<JobView> {
    let job = state
        .queue
        .extend_lease(&who, id, body.attempt, body.lease_seconds)
        .await?;
    Ok(Data::ok(job.into()))
}

/// Ends the current attempt: success completes the job; failure retries it after a backoff
/// while attempts remain, else dead-letters it.
#[utoipa::path(patch, path = "/queue/jobs/{id}/complete", tag = "queue", request_body = CompleteBody,
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, body = Success<JobView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn complete_job(
    State(state): State<AppState>,
    Caller(who): Caller,
    JobIdParam(id): JobIdParam,
    ApiJson(body): ApiJson<CompleteBody>,
) -> Reply<JobView> {
    let (attempt, outcome) = body.into_outcome()?;
    Ok(Data::ok(
        state
            .queue
            .complete(&who, id, attempt, outcome)
            .await?
            .into(),
    ))
}

/// Changes the priority of a job that is not terminal yet.
#[utoipa::path(patch, path = "/queue/jobs/{id}/priority", tag = "queue", request_body = PriorityBody,
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, body = Success<JobView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn set_priority(
    State(state): State<AppState>,
    Caller(who): Caller,
    JobIdParam(id): JobIdParam,
    ApiJson(body): ApiJson<PriorityBody>,
) -> Reply<JobView> {
    Ok(Data::ok(
        state
            .queue
            .set_priority(&who, id, body.priority)
            .await?
            .into(),
    ))
}

/// Redrives a dead-lettered job: back to `QUEUED` with a fresh allowance of attempts.
#[utoipa::path(post, path = "/queue/jobs/{id}/retry", tag = "queue",
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses((status = 200, body = Success<JobView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn retry_job(
    State(state): State<AppState>,
    Caller(who): Caller,
    JobIdParam(id): JobIdParam,
) -> Reply<JobView> {
    Ok(Data::ok(state.queue.redrive(&who, id).await?.into()))
}

/// Claims up to `max_jobs` due jobs of a pool, waiting up to `wait_seconds` for work.
/// `data` is always an array, `[]` when nothing came.
#[utoipa::path(post, path = "/queue/claim", tag = "queue", request_body = ClaimBody,
    responses((status = 200, body = Success<Vec<JobView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn claim(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<ClaimBody>,
) -> Reply<Vec<JobView>> {
    Ok(Data::ok(JobView::all(
        state.queue.claim(&who, body.into()).await?,
    )))
}

/// Queue figures per (pool, priority) for the caller's tenant.
#[utoipa::path(get, path = "/queue/stats", tag = "queue",
    responses((status = 200, body = Success<Vec<StatsView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn stats(State(state): State<AppState>, Caller(who): Caller) -> Reply<Vec<StatsView>> {
    let stats = state.queue.stats(&who).await?;
    Ok(Data::ok(stats.into_iter().map(StatsView::from).collect()))
}

/// The caller's tenant's running limit.
#[utoipa::path(get, path = "/queue/limits", tag = "queue",
    responses((status = 200, body = Success<Limits>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn get_limits(State(state): State<AppState>, Caller(who): Caller) -> Reply<Limits> {
    let max_running = state.queue.running_limit(&who).await?;
    Ok(Data::ok(Limits { max_running }))
}

/// Sets or (with `null`) removes the caller's tenant's running limit; claims enforce it from now
/// on, atomically across replicas.
#[utoipa::path(put, path = "/queue/limits", tag = "queue", request_body = Limits,
    responses((status = 200, body = Success<Limits>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn set_limits(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<Limits>,
) -> Reply<Limits> {
    let max_running = state
        .queue
        .set_running_limit(&who, body.max_running)
        .await?;
    Ok(Data::ok(Limits { max_running }))
}

/// Runs one reaper pass now: requeues or dead-letters jobs whose lease expired.
#[utoipa::path(post, path = "/queue/maintenance/requeue-expired", tag = "queue",
    responses((status = 200, body = Success<ReapView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn requeue_expired(State(state): State<AppState>, Caller(who): Caller) -> Reply<ReapView> {
    Ok(Data::ok(state.queue.requeue_expired(&who).await?.into()))
}
