//! Sessions and API keys at `/auth/*` (DESIGN §3.2: auth lives at the root, not under `/api`).
//! Log-in, refresh, validate and log-out are public (the credential is in the body); the API
//! key routes need `admin` (checked by the auth layer, from the policy table).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use switchyard_auth::layer::bearer;
use switchyard_auth::{Identity, Secret};
use switchyard_types::{Error, ErrorKind};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::dto::identity::{
    ApiKeyView, CreateApiKeyBody, CreatedApiKeyView, LoginBody, PrincipalView, RefreshBody,
    SessionView, ValidateBody, scopes,
};
use crate::envelope::{ApiError, Data};
use crate::extract::ApiJson;
use crate::openapi::{Failure, Success};
use crate::principal::{Caller, ClientAddr};

type Reply<T> = Result<Data<T>, ApiError>;

/// The `/auth` routes with their OpenAPI operations (mounted at the root).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(validate))
        .routes(routes!(logout))
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
}

/// The identity service, or `503` when this gateway was built without one.
pub(crate) fn identity(state: &AppState) -> Result<&Identity, ApiError> {
    state.identity.as_ref().ok_or_else(|| {
        ApiError(Error::unavailable(
            "identity is not configured on this server",
        ))
    })
}

/// Logs in. The 11th failed attempt for one (client address, email) within a minute, and every
/// attempt after it in that minute, is `429` with `Retry-After`.
#[utoipa::path(post, path = "/auth/session", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = Success<SessionView>), (status = 401, body = Failure),
        (status = 429, body = Failure), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<LoginBody>,
) -> Reply<SessionView> {
    let session = identity(&state)?
        .login(&body.email, &Secret::new(body.password), &client)
        .await?;
    Ok(Data::ok(session.into()))
}

/// Trades a refresh token for a new pair; the presented token is rotated. Presenting a rotated
/// token again (after 10 s) revokes every token of that log-in. After 10 failed refreshes from
/// one client address within a minute, refreshes from it are `429` with `Retry-After`.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = Success<SessionView>), (status = 401, body = Failure),
        (status = 429, body = Failure), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn refresh(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Reply<SessionView> {
    let session = identity(&state)?
        .refresh(&Secret::new(body.refresh_token), &client)
        .await?;
    Ok(Data::ok(session.into()))
}

/// Says whom an access token or API key stands for (`401` when it is not valid).
#[utoipa::path(post, path = "/auth/validate", tag = "auth", request_body = ValidateBody,
    responses((status = 200, body = Success<PrincipalView>), (status = 401, body = Failure),
        (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn validate(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ValidateBody>,
) -> Reply<PrincipalView> {
    let token = match body.token {
        Some(token) => token,
        None => bearer(&headers)?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unauthenticated,
                    "send a token in the body or the authorization header",
                )
            })?
            .to_owned(),
    };
    let who = identity(&state)?.authenticate(&token).await?;
    Ok(Data::ok(who.into()))
}

/// Ends the log-in the refresh token belongs to. Idempotent.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = Success<Object>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Reply<serde_json::Value> {
    identity(&state)?
        .logout(&Secret::new(body.refresh_token))
        .await?;
    Ok(Data::ok(serde_json::json!({})))
}

/// Creates an API key; the key is in this response and nowhere else, ever.
#[utoipa::path(post, path = "/auth/api-keys", tag = "auth", request_body = CreateApiKeyBody,
    responses((status = 201, body = Success<CreatedApiKeyView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn create_api_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<CreateApiKeyBody>,
) -> Reply<CreatedApiKeyView> {
    let created = identity(&state)?
        .create_api_key(
            &who,
            &body.name,
            scopes(&body.scopes)?,
            body.ttl_seconds.filter(|s| *s > 0).map(Duration::from_secs),
        )
        .await?;
    Ok(Data::created(CreatedApiKeyView {
        key: created.secret.expose().to_owned(),
        api_key: created.key.into(),
    }))
}

/// The tenant's API keys, newest first, revoked ones included (never the keys themselves).
#[utoipa::path(get, path = "/auth/api-keys", tag = "auth",
    responses((status = 200, body = Success<Vec<ApiKeyView>>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn list_api_keys(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Reply<Vec<ApiKeyView>> {
    let keys = identity(&state)?.list_api_keys(&who).await?;
    Ok(Data::ok(keys.into_iter().map(Into::into).collect()))
}

/// Revokes an API key (idempotent).
#[utoipa::path(delete, path = "/auth/api-keys/{id}", tag = "auth",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, body = Success<ApiKeyView>), (status = "4XX", body = Failure), (status = "5XX", body = Failure)))]
async fn revoke_api_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Reply<ApiKeyView> {
    let id = Uuid::parse_str(&id).map_err(|_| Error::invalid("id", "is not a key id"))?;
    let key = identity(&state)?.revoke_api_key(&who, id).await?;
    Ok(Data::ok(key.into()))
}
