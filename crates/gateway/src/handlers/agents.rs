//! The agent registry routes (DESIGN §3.2): list and get. Paths are relative to the API mount.

use axum::extract::{Path, State};
use switchyard_core::Agents;
use switchyard_types::Error;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::dto::{AgentView, ListAgentsQuery};
use crate::envelope::{ApiError, Data};
use crate::extract::ApiQuery;
use crate::openapi::{Failure, Success};
use crate::principal::Caller;

type Reply<T> = Result<Data<T>, ApiError>;

/// The agent routes with their OpenAPI operations.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents))
        .routes(routes!(get_agent))
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
    let id = id
        .parse()
        .map_err(|_| ApiError(Error::invalid("id", "is not a valid agent id (UUID)")))?;
    Ok(Data::ok(agents(&state)?.get(&who, id).await?.into()))
}
