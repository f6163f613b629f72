//! The agent routes (DESIGN §3.2): the registry (list, get, deregister), enrollment and
//! registration tokens. Paths are relative to the API mount.

use std::time::Duration;

use axum::extract::{Path, State};
use switchyard_auth::{Enrollments, Secret};
use switchyard_core::Agents;
use switchyard_types::Error;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::dto::{
    AgentStatusBody, AgentView, CreateRegistrationTokenBody, CreatedRegistrationTokenView,
    EnrolledView, ListAgentsQuery, PoolView, RegisterAgentBody, RegistrationTokenView,
    ScalePoolBody,
};
use crate::envelope::{ApiError, Data};
use crate::extract::{ApiJson, ApiQuery};
use crate::openapi::{Failure, Success};
use crate::principal::Caller;

type Reply<T> = Result<Data<T>, ApiError>;

/// The agent routes with their OpenAPI operations.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents))
        .routes(routes!(get_agent))
        .routes(routes!(deregister_agent))
        .routes(routes!(set_agent_status))
        .routes(routes!(agent_heartbeat))
        .routes(routes!(register_agent))
        .routes(routes!(create_registration_token, list_registration_tokens))
        .routes(routes!(revoke_registration_token))
        .routes(routes!(list_pools))
        .routes(routes!(get_pool))
        .routes(routes!(scale_pool))
}

fn enrollments(state: &AppState) -> Result<&Enrollments, ApiError> {
    state.enrollments.as_ref().ok_or_else(|| {
        ApiError(Error::unavailable(
            "enrollment is not served by this server",
        ))
    })
}

fn uuid(value: &str, field: &str) -> Result<Uuid, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError(Error::invalid(field, "is not a valid id (UUID)")))
}

fn agents(state: &AppState) -> Result<&Agents, ApiError> {
    state
        .agents
        .as_ref()
        .ok_or_else(|| ApiError(Error::unavailable("agents are not served by this server")))
}

/// Lists the caller's agents, most recently seen first.
#[utoipa::path(get, path = "/agents", tag = "agents", params(ListAgentsQuery),
    responses((status = 200, body = Success<Vec<AgentView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_agents(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiQuery(query): ApiQuery<ListAgentsQuery>,
) -> Reply<Vec<AgentView>> {
    let found = agents(&state)?.list(&who, query.pool.as_deref()).await?;
    Ok(Data::ok(found.into_iter().map(Into::into).collect()))
}

/// One agent.
#[utoipa::path(get, path = "/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "Agent id (UUID)")),
    responses((status = 200, body = Success<AgentView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn get_agent(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<AgentView> {
    let id = uuid(&id, "id")?;
    Ok(Data::ok(agents(&state)?.get(&who, id).await?.into()))
}

/// Deregisters an agent: its certificate is refused from now on (idempotent).
#[utoipa::path(post, path = "/agents/{id}/deregister", tag = "agents",
    params(("id" = String, Path, description = "Agent id (UUID)")),
    responses((status = 200, body = Success<AgentView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn deregister_agent(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<AgentView> {
    let id = uuid(&id, "id")?;
    Ok(Data::ok(agents(&state)?.deregister(&who, id).await?.into()))
}

/// Drains (`TERMINATING`: it finishes its jobs and takes no new ones) or undrains (`HEALTHY`)
/// an agent.
#[utoipa::path(post, path = "/agents/{id}/status", tag = "agents", request_body = AgentStatusBody,
    params(("id" = String, Path, description = "Agent id (UUID)")),
    responses((status = 200, body = Success<AgentView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn set_agent_status(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AgentStatusBody>,
) -> Reply<AgentView> {
    let id = uuid(&id, "id")?;
    Ok(Data::ok(
        agents(&state)?
            .set_status(&who, id, body.status)
            .await?
            .into(),
    ))
}

/// A heartbeat without a stream, for simple clients: send one every heartbeat interval.
#[utoipa::path(post, path = "/agents/{id}/heartbeat", tag = "agents",
    params(("id" = String, Path, description = "Agent id (UUID)")),
    responses((status = 200, body = Success<AgentView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn agent_heartbeat(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<AgentView> {
    let id = uuid(&id, "id")?;
    Ok(Data::ok(
        agents(&state)?
            .heartbeat(&who, None, Some(id))
            .await?
            .into(),
    ))
}

/// Enrolls an agent: a registration token (the only credential needed) and a signing request
/// for the agent's key buy a client certificate. The token works once.
#[utoipa::path(post, path = "/agents/register", tag = "agents", request_body = RegisterAgentBody,
    responses((status = 201, body = Success<EnrolledView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn register_agent(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterAgentBody>,
) -> Reply<EnrolledView> {
    let csr = switchyard_pki::csr_from_pem(&body.csr_pem)
        .map_err(|e| ApiError(Error::invalid("csr_pem", e.to_string())))?;
    let enrolled = enrollments(&state)?
        .enroll(&Secret::new(body.token), &body.name, body.labels, &csr)
        .await?;
    Ok(Data::created(EnrolledView {
        agent: enrolled.agent.into(),
        certificate: enrolled.certificate.into(),
    }))
}

/// Creates a one-time registration token for a pool; the token is in this response only.
#[utoipa::path(post, path = "/agents/registration-tokens", tag = "agents", request_body = CreateRegistrationTokenBody,
    responses((status = 201, body = Success<CreatedRegistrationTokenView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn create_registration_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<CreateRegistrationTokenBody>,
) -> Reply<CreatedRegistrationTokenView> {
    let ttl = body.ttl_seconds.map(|s| Duration::from_secs(s.into()));
    let (stored, token) = enrollments(&state)?
        .create_token(&who, &body.pool, ttl)
        .await?;
    Ok(Data::created(CreatedRegistrationTokenView {
        token: token.expose().to_owned(),
        registration_token: stored.into(),
    }))
}

/// The tenant's registration tokens, newest first, used, expired and revoked ones included.
#[utoipa::path(get, path = "/agents/registration-tokens", tag = "agents",
    responses((status = 200, body = Success<Vec<RegistrationTokenView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_registration_tokens(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Reply<Vec<RegistrationTokenView>> {
    let tokens = enrollments(&state)?.list_tokens(&who).await?;
    Ok(Data::ok(tokens.into_iter().map(Into::into).collect()))
}

/// Revokes a registration token (idempotent).
#[utoipa::path(delete, path = "/agents/registration-tokens/{id}", tag = "agents",
    params(("id" = String, Path, description = "Token id (UUID)")),
    responses((status = 200, body = Success<RegistrationTokenView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn revoke_registration_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<RegistrationTokenView> {
    let id = uuid(&id, "id")?;
    Ok(Data::ok(
        enrollments(&state)?.revoke_token(&who, id).await?.into(),
    ))
}

/// The tenant's pools (every pool with settings, agents or work), each with its scaling signal.
#[utoipa::path(get, path = "/agents/pools", tag = "agents",
    responses((status = 200, body = Success<Vec<PoolView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_pools(State(state): State<AppState>, Caller(who): Caller) -> Reply<Vec<PoolView>> {
    let pools = agents(&state)?.pools(&who).await?;
    Ok(Data::ok(pools.into_iter().map(Into::into).collect()))
}

/// One pool.
#[utoipa::path(get, path = "/agents/pools/{name}", tag = "agents",
    params(("name" = String, Path, description = "Pool name")),
    responses((status = 200, body = Success<PoolView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn get_pool(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Reply<PoolView> {
    Ok(Data::ok(agents(&state)?.pool(&who, &name).await?.into()))
}

/// Changes a pool's bounds, or pins or unpins its agent count.
#[utoipa::path(post, path = "/agents/pools/{name}/scale", tag = "agents", request_body = ScalePoolBody,
    params(("name" = String, Path, description = "Pool name")),
    responses((status = 200, body = Success<PoolView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn scale_pool(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ScalePoolBody>,
) -> Reply<PoolView> {
    let pool = agents(&state)?.scale(&who, &name, &body.into()).await?;
    Ok(Data::ok(pool.into()))
}
