//! The deployment routes (DESIGN §3.2, §3.6): environments, deployments and their steps
//! (staging, production, rollback; the last two dry runs unless told to execute), events,
//! guard evaluations, signals and the dashboard summary; the tenant's webhooks and the delivery
//! status of each deployment's notifications. Paths are relative to the API mount.

use axum::extract::{Path, State};
use switchyard_core::Deployments;
use switchyard_types::{DeploymentId, Error, WebhookId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::dto::{
    AcceptedView, CreateDeploymentBody, CreateWebhookBody, CreatedWebhookView, DeploymentView,
    EnvironmentView, EvaluationView, EventView, EventsQuery, ListDeploymentsQuery,
    NotificationView, PlanView, PromoteBody, PutEnvironmentBody, RollbackBody,
    ServiceDeploymentsQuery, SignalBody, SummaryView, WebhookView,
};
use crate::envelope::{ApiError, Data};
use crate::extract::{ApiJson, ApiJsonOrDefault, ApiQuery};
use crate::openapi::{Failure, Success};
use crate::principal::Caller;

type Reply<T> = Result<Data<T>, ApiError>;

/// The most events one answer carries; ask again with `after` for more.
const MAX_EVENTS: u32 = 500;

/// The deployment routes with their OpenAPI operations.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(put_environment, list_environments))
        .routes(routes!(create_deployment, list_deployments))
        .routes(routes!(get_deployment))
        .routes(routes!(list_service_deployments))
        .routes(routes!(stage_deployment))
        .routes(routes!(promote_deployment))
        .routes(routes!(rollback_deployment))
        .routes(routes!(deployment_events))
        .routes(routes!(deployment_evaluations))
        .routes(routes!(report_signal))
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(deployment_notifications))
}

fn deployments(state: &AppState) -> Result<&Deployments, ApiError> {
    state.deployments.as_ref().ok_or_else(|| {
        ApiError(Error::unavailable(
            "deployments are not served by this server",
        ))
    })
}

fn deployment_id(raw: &str) -> Result<DeploymentId, ApiError> {
    raw.parse().map_err(ApiError)
}

/// The caller's jobs and deployments counted by state.
#[utoipa::path(get, path = "/dashboard/summary", tag = "deployments",
    responses((status = 200, body = Success<SummaryView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn summary(State(state): State<AppState>, Caller(who): Caller) -> Reply<SummaryView> {
    Ok(Data::ok(deployments(&state)?.summary(&who).await?.into()))
}

/// Creates or replaces an environment: where deployments go, and which pool deploys there.
#[utoipa::path(post, path = "/dashboard/environments", tag = "deployments", request_body = PutEnvironmentBody,
    responses((status = 201, body = Success<EnvironmentView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn put_environment(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<PutEnvironmentBody>,
) -> Reply<EnvironmentView> {
    let stored = deployments(&state)?
        .put_environment(&who, body.into())
        .await?;
    Ok(Data::created(stored.into()))
}

/// The caller's environments, by name.
#[utoipa::path(get, path = "/dashboard/environments", tag = "deployments",
    responses((status = 200, body = Success<Vec<EnvironmentView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_environments(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Reply<Vec<EnvironmentView>> {
    let found = deployments(&state)?.environments(&who).await?;
    Ok(Data::ok(found.into_iter().map(Into::into).collect()))
}

/// Creates a deployment of `service@version`, `PENDING`: nothing runs until it is staged. Its
/// environments must exist.
#[utoipa::path(post, path = "/dashboard/deployments", tag = "deployments", request_body = CreateDeploymentBody,
    responses((status = 201, body = Success<DeploymentView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn create_deployment(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<CreateDeploymentBody>,
) -> Reply<DeploymentView> {
    let created = deployments(&state)?.create(&who, body.into()).await?;
    Ok(Data::created(created.into()))
}

/// Lists the caller's deployments, newest first, one page at a time.
#[utoipa::path(get, path = "/dashboard/deployments", tag = "deployments", params(ListDeploymentsQuery),
    responses((status = 200, description = "A page of deployments; meta.next_page_token when there are more", body = Success<Vec<DeploymentView>>),
        (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_deployments(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiQuery(query): ApiQuery<ListDeploymentsQuery>,
) -> Reply<Vec<DeploymentView>> {
    let page = deployments(&state)?.list(&who, query.into()).await?;
    Ok(Data::page(
        DeploymentView::all(page.items),
        page.next_page_token,
    ))
}

/// One deployment.
#[utoipa::path(get, path = "/dashboard/deployments/{id}", tag = "deployments",
    params(("id" = String, Path, description = "Deployment id (UUID)")),
    responses((status = 200, body = Success<DeploymentView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn get_deployment(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<DeploymentView> {
    let id = deployment_id(&id)?;
    Ok(Data::ok(deployments(&state)?.get(&who, id).await?.into()))
}

/// Lists one service's deployments, newest first, one page at a time.
#[utoipa::path(get, path = "/dashboard/deployments/service/{name}", tag = "deployments",
    params(("name" = String, Path, description = "Service name"), ServiceDeploymentsQuery),
    responses((status = 200, description = "A page of deployments; meta.next_page_token when there are more", body = Success<Vec<DeploymentView>>),
        (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_service_deployments(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<ServiceDeploymentsQuery>,
) -> Reply<Vec<DeploymentView>> {
    let page = deployments(&state)?
        .list(&who, query.into_list(name))
        .await?;
    Ok(Data::page(
        DeploymentView::all(page.items),
        page.next_page_token,
    ))
}

/// Deploys a `PENDING` deployment to its staging environment (`STAGING`): the step's job is
/// enqueued in the environment's pool.
#[utoipa::path(post, path = "/dashboard/deployments/{id}/staging", tag = "deployments",
    params(("id" = String, Path, description = "Deployment id (UUID)")),
    responses((status = 200, body = Success<PlanView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn stage_deployment(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<PlanView> {
    let id = deployment_id(&id)?;
    Ok(Data::ok(deployments(&state)?.stage(&who, id).await?.into()))
}

/// Promotes a `STAGED` deployment to production. A dry run unless `execute` is `true`: the
/// answer says what would happen and nothing changes. The body may be left out.
#[utoipa::path(post, path = "/dashboard/deployments/{id}/production", tag = "deployments", request_body = PromoteBody,
    params(("id" = String, Path, description = "Deployment id (UUID)")),
    responses((status = 200, body = Success<PlanView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn promote_deployment(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<PromoteBody>,
) -> Reply<PlanView> {
    let id = deployment_id(&id)?;
    let plan = deployments(&state)?.promote(&who, id, body.execute).await?;
    Ok(Data::ok(plan.into()))
}

/// Rolls production back from a deployment in production (`PROMOTING`, `GUARDING`, or
/// `SUCCEEDED` while current) to `version` or the version it replaced. A dry run unless
/// `execute` is `true`. The body may be left out.
#[utoipa::path(post, path = "/dashboard/deployments/{id}/rollback", tag = "deployments", request_body = RollbackBody,
    params(("id" = String, Path, description = "Deployment id (UUID)")),
    responses((status = 200, body = Success<PlanView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn rollback_deployment(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<RollbackBody>,
) -> Reply<PlanView> {
    let id = deployment_id(&id)?;
    let plan = deployments(&state)?
        .rollback(&who, id, body.version, body.execute)
        .await?;
    Ok(Data::ok(plan.into()))
}

/// A deployment's events after `after`, oldest first (at most 500; ask again with the last
/// `seq` for more): what is stored now. gRPC `WatchDeployments` follows them live.
#[utoipa::path(get, path = "/dashboard/deployments/{id}/events", tag = "deployments",
    params(("id" = String, Path, description = "Deployment id (UUID)"), EventsQuery),
    responses((status = 200, body = Success<Vec<EventView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn deployment_events(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Reply<Vec<EventView>> {
    let id = deployment_id(&id)?;
    let events = deployments(&state)?
        .events(&who, id, query.after.unwrap_or(0), MAX_EVENTS)
        .await?;
    Ok(Data::ok(events.into_iter().map(EventView::from).collect()))
}

/// A deployment's guard evaluations, oldest first, each with every gate's verdict.
#[utoipa::path(get, path = "/dashboard/deployments/{id}/evaluations", tag = "deployments",
    params(("id" = String, Path, description = "Deployment id (UUID)")),
    responses((status = 200, body = Success<Vec<EvaluationView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn deployment_evaluations(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<Vec<EvaluationView>> {
    let id = deployment_id(&id)?;
    let found = deployments(&state)?.evaluations(&who, id).await?;
    Ok(Data::ok(found.into_iter().map(Into::into).collect()))
}

/// Reports a sample of a service version's health (requests, errors, latency), read by the
/// guard's gates while that version is guarded.
#[utoipa::path(post, path = "/dashboard/signals", tag = "deployments", request_body = SignalBody,
    responses((status = 202, body = Success<AcceptedView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn report_signal(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<SignalBody>,
) -> Reply<AcceptedView> {
    deployments(&state)?
        .report_signal(
            &who,
            body.service,
            body.version,
            body.requests,
            body.errors,
            body.latency_ms,
        )
        .await?;
    Ok(Data::accepted(AcceptedView { accepted: true }))
}

/// Adds a webhook: every later event of the caller's deployments (state changes and gate
/// failures) is POSTed to it as JSON, signed (`X-Switchyard-Signature: t=<unix seconds>,
/// v1=<hex HMAC-SHA256 of "<t>.<body>">`) and retried with backoff; receivers dedupe by
/// `X-Switchyard-Delivery`. Without webhooks, notifications go to the outbox directory. The
/// answer carries the secret (generated when left out): the only time it is shown. At most 20
/// per tenant (409 beyond).
#[utoipa::path(post, path = "/dashboard/webhooks", tag = "deployments", request_body = CreateWebhookBody,
    responses((status = 201, body = Success<CreatedWebhookView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn create_webhook(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<CreateWebhookBody>,
) -> Reply<CreatedWebhookView> {
    let created = deployments(&state)?
        .create_webhook(&who, body.url, body.secret)
        .await?;
    Ok(Data::created(created.into()))
}

/// The caller's webhooks, oldest first (never their secrets).
#[utoipa::path(get, path = "/dashboard/webhooks", tag = "deployments",
    responses((status = 200, body = Success<Vec<WebhookView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_webhooks(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Reply<Vec<WebhookView>> {
    let found = deployments(&state)?.webhooks(&who).await?;
    Ok(Data::ok(found.into_iter().map(Into::into).collect()))
}

/// Deletes a webhook and its notifications (pending ones are not delivered).
#[utoipa::path(delete, path = "/dashboard/webhooks/{id}", tag = "deployments",
    params(("id" = String, Path, description = "Webhook id (UUID)")),
    responses((status = 200, body = Success<WebhookView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn delete_webhook(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<WebhookView> {
    let id: WebhookId = id.parse().map_err(ApiError)?;
    let deleted = deployments(&state)?.delete_webhook(&who, id).await?;
    Ok(Data::ok(deleted.into()))
}

/// The delivery status of a deployment's notifications (to each webhook, or the outbox), by
/// event: state, attempts, last error, delivery time.
#[utoipa::path(get, path = "/dashboard/deployments/{id}/notifications", tag = "deployments",
    params(("id" = String, Path, description = "Deployment id (UUID)")),
    responses((status = 200, body = Success<Vec<NotificationView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn deployment_notifications(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<Vec<NotificationView>> {
    let id = deployment_id(&id)?;
    let found = deployments(&state)?.notifications(&who, id).await?;
    Ok(Data::ok(found.into_iter().map(Into::into).collect()))
}
